// Package agentapi holds the JSON of the VM host agent's requests and answers
// (test/vm/hostagent, built into the guest image), shared by the agent and by
// test/vm, which calls it.
package agentapi

// IOBenchRequest and IOBenchResult are POST /iobench's JSON: the figures
// fio would give for one job at queue depth 1, since busybox has no fio.
type IOBenchRequest struct {
	// Path is a block device (or a file on one), opened O_DIRECT.
	Path string `json:"path"`
	// MiB is how much is written then read sequentially, in 1 MiB blocks,
	// from offset 0; the random reads stay within it.
	MiB int `json:"mib"`
	// RandomSeconds is how long the 4 KiB random reads run.
	RandomSeconds float64 `json:"randomSeconds"`
}

// IOBenchResult is the answer; Err is set when the benchmark failed.
type IOBenchResult struct {
	Path          string  `json:"path"`
	SizeBytes     int64   `json:"sizeBytes"`
	Bytes         int64   `json:"bytes"`
	WriteSeconds  float64 `json:"writeSeconds"`
	WriteMiBps    float64 `json:"writeMiBps"`
	ReadSeconds   float64 `json:"readSeconds"`
	ReadMiBps     float64 `json:"readMiBps"`
	RandomReads   int64   `json:"randomReads"`
	RandomSeconds float64 `json:"randomSeconds"`
	RandomIOPS    float64 `json:"randomIOPS"`
	Err           string  `json:"err,omitempty"`
}
