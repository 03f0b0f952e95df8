package hub

import "time"

// Tuning is what every controller has its own setting for: how many workers
// it runs and how long one of its CSI calls may take.
type Tuning struct {
	Workers int
	Timeout time.Duration
}

// Tune is the one rule for a controller's settings, applied to each field on
// its own: the controller's flag (own; 0 when not given,
// --<controller>-worker-threads / --<controller>-timeout), else the global
// --worker-threads / --timeout, else the sidecar's default (def).
func (o *Options) Tune(own, def Tuning) Tuning {
	return Tuning{
		Workers: firstSet(own.Workers, o.WorkerThreads, def.Workers),
		Timeout: firstSet(own.Timeout, o.Timeout, def.Timeout),
	}
}

// firstSet returns the first positive value, or the last one.
func firstSet[T int | time.Duration](vals ...T) T {
	for _, v := range vals[:len(vals)-1] {
		if v > 0 {
			return v
		}
	}
	return vals[len(vals)-1]
}
