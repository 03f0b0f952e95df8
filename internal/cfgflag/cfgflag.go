// Package cfgflag gives a controller's Config its defaults, flags and checks
// from one table: each row names a setting's flag, default, help text and
// rules once, so they cannot drift apart.
package cfgflag

import (
	"flag"
	"fmt"
	"time"
)

// Value is what a flag of a controller's Config can hold.
type Value interface {
	bool | int | float64 | string | time.Duration
}

// Flag is one setting of a controller's flag table.
type Flag struct {
	name, usage string
	p           any // *bool, *int, *float64, *string or *time.Duration
	reset       func()
	check       func() error
}

// Bool, Int, Float64, String and Duration are the setting *p: its flag name,
// its default (the sidecar's, applied by Reset), its help and the rules its
// value must meet. As with the flag package, the order is p, name, default,
// usage.
func Bool(p *bool, name string, def bool, usage string) Flag { return entry(p, name, def, usage) }
func Int(p *int, name string, def int, usage string, r ...Rule[int]) Flag {
	return entry(p, name, def, usage, r...)
}
func Float64(p *float64, name string, def float64, usage string) Flag {
	return entry(p, name, def, usage)
}
func String(p *string, name string, def string, usage string, r ...Rule[string]) Flag {
	return entry(p, name, def, usage, r...)
}
func Duration(p *time.Duration, name string, def time.Duration, usage string, r ...Rule[time.Duration]) Flag {
	return entry(p, name, def, usage, r...)
}

func entry[T Value](p *T, name string, def T, usage string, rules ...Rule[T]) Flag {
	return Flag{name: name, usage: usage, p: p, reset: func() { *p = def }, check: func() error {
		for _, r := range rules {
			if err := r.check(name, *p); err != nil {
				return err
			}
		}
		return nil
	}}
}

// Reset gives every setting its default: a Config's DefaultConfig.
func Reset(flags ...Flag) {
	for _, f := range flags {
		f.reset()
	}
}

// Add registers flags on fs with the flag package's own value types, so -h
// shows them as if registered one by one. A flag's default is the value *p
// has now (normally what Reset gave it).
func Add(fs *flag.FlagSet, flags ...Flag) {
	for _, f := range flags {
		switch p := f.p.(type) {
		case *bool:
			fs.BoolVar(p, f.name, *p, f.usage)
		case *int:
			fs.IntVar(p, f.name, *p, f.usage)
		case *float64:
			fs.Float64Var(p, f.name, *p, f.usage)
		case *string:
			fs.StringVar(p, f.name, *p, f.usage)
		case *time.Duration:
			fs.DurationVar(p, f.name, *p, f.usage)
		}
	}
}

// Check returns the first rule broken, in table order, naming its flag.
func Check(flags ...Flag) error {
	for _, f := range flags {
		if err := f.check(); err != nil {
			return err
		}
	}
	return nil
}

// Rule is a condition on a flag's value; want completes "--<flag> ...",
// e.g. "must be positive".
type Rule[T Value] struct {
	ok   func(T) bool
	want string
	// noValue leaves ", got <value>" out of the error (an empty string says nothing).
	noValue bool
	when    *bool // nil: always; else only while *when
}

// If applies r only while *when is true.
func (r Rule[T]) If(when *bool) Rule[T] {
	r.when = when
	return r
}

func (r Rule[T]) check(name string, v T) error {
	switch {
	case r.when != nil && !*r.when, r.ok(v):
		return nil
	case r.noValue:
		return fmt.Errorf("--%s %s", name, r.want)
	}
	return fmt.Errorf("--%s %s, got %v", name, r.want, v)
}

// Must is a rule of its own.
func Must[T Value](want string, ok func(T) bool) Rule[T] { return Rule[T]{ok: ok, want: want} }

// Positive: "--<flag> must be positive, got <value>".
func Positive[T int | time.Duration]() Rule[T] {
	return Must("must be positive", func(v T) bool { return v > 0 })
}

// AtLeast refuses a value below minimum, saying want.
func AtLeast[T int | time.Duration](minimum T, want string) Rule[T] {
	return Must(want, func(v T) bool { return v >= minimum })
}

// MinusOneOrPositive is for name lengths where -1 means "all of it".
func MinusOneOrPositive(want string) Rule[int] {
	return Must(want, func(v int) bool { return v == -1 || v > 0 })
}

// NotEmpty: "--<flag> must not be empty".
func NotEmpty() Rule[string] {
	return Rule[string]{ok: func(s string) bool { return s != "" }, want: "must not be empty", noValue: true}
}

// Marked wraps a flag's value to record in *set that the flag was given.
// T is the flag's type (bool keeps --flag without =true working).
func Marked[T bool | string](v flag.Value, set *bool) flag.Value {
	return &marked[T]{Value: v, set: set}
}

type marked[T bool | string] struct {
	flag.Value
	set *bool
}

func (m *marked[T]) Set(s string) error {
	*m.set = true
	return m.Value.Set(s)
}

// String works on a zero marked, which flag.PrintDefaults builds to find the
// zero value: T's zero, as the wrapped flag's own type would say.
func (m *marked[T]) String() string {
	if m == nil || m.Value == nil {
		var zero T
		return fmt.Sprint(zero)
	}
	return m.Value.String()
}

func (m *marked[T]) IsBoolFlag() bool {
	var zero T
	_, isBool := any(zero).(bool)
	return isBool
}

// Tuning is a controller's own --<controller>-worker-threads and
// --<controller>-timeout, embedded in its Config; internal/app's registry
// registers them for every controller. 0 is unset: the global flag applies,
// else the sidecar's default (hub.Options.Tune).
type Tuning struct {
	WorkerThreads int
	Timeout       time.Duration
}

// Own lets the registry reach the Tuning of any controller's Config.
func (t *Tuning) Own() *Tuning { return t }
