package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/hub"
)

var updateREADME = flag.Bool("update", false, "rewrite the README's tuning table from the registry")

const (
	tuningTableStart = "<!-- tuning table: generated, do not edit -->\n"
	tuningTableEnd   = "<!-- end of tuning table -->"
)

// The README's table of per-controller settings is the registry's: adding a
// controller, or changing a default, fails here until the README says so
// (-update rewrites it).
func TestREADMETuningTable(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, tuningTableStart)
	j := strings.Index(s, tuningTableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q block", strings.TrimSpace(tuningTableStart), tuningTableEnd)
	}
	// The table sits in a list item: indented like the start marker.
	lineStart := strings.LastIndex(s[:i], "\n") + 1
	indent := s[lineStart:i]
	var want strings.Builder
	for _, line := range strings.SplitAfter(TuningTable(), "\n") {
		if line != "" {
			want.WriteString(indent + line)
		}
	}
	want.WriteString(indent)
	got := s[i+len(tuningTableStart) : j]
	if got == want.String() {
		return
	}
	if *updateREADME {
		if err := os.WriteFile(path, []byte(s[:i+len(tuningTableStart)]+want.String()+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's tuning table differs from the registry's (go test ./internal/app -run TestREADMETuningTable -update):\n got:\n%s\nwant:\n%s", got, want.String())
}

// Every controller's --<name>-worker-threads and --<name>-timeout come from
// the registry, default to 0 and resolve as hub.Options.Tune says: own flag,
// else the global one, else the sidecar's default.
func TestTuningFlags(t *testing.T) {
	for _, s := range controllerSpecs {
		t.Run(s.name, func(t *testing.T) {
			def := s.tuning.defaults
			if def.Workers <= 0 || def.Timeout <= 0 {
				t.Fatalf("defaults %+v: the sidecar's defaults must be positive", def)
			}
			cases := []struct {
				name   string
				args   []string
				global hub.Options
				want   hub.Tuning
			}{
				{"unset", nil, hub.Options{}, def},
				{"global", nil, hub.Options{WorkerThreads: 3, Timeout: 5 * time.Second}, hub.Tuning{Workers: 3, Timeout: 5 * time.Second}},
				{"own wins", []string{"--" + s.name + "-worker-threads=7", "--" + s.name + "-timeout=30s"},
					hub.Options{WorkerThreads: 3, Timeout: 5 * time.Second}, hub.Tuning{Workers: 7, Timeout: 30 * time.Second}},
				{"own 0 is unset", []string{"--" + s.name + "-worker-threads=0", "--" + s.name + "-timeout=0s"},
					hub.Options{Timeout: 5 * time.Second}, hub.Tuning{Workers: def.Workers, Timeout: 5 * time.Second}},
			}
			for _, tc := range cases {
				o := DefaultControllerOptions()
				fs := flag.NewFlagSet("test", flag.ContinueOnError)
				fs.SetOutput(io.Discard)
				o.AddFlags(fs)
				if err := fs.Parse(tc.args); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				own := s.own(&o)
				if got := tc.global.Tune(hub.Tuning{Workers: own.WorkerThreads, Timeout: own.Timeout}, def); got != tc.want {
					t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
				}
			}
			for _, bad := range []string{"--" + s.name + "-worker-threads=-1", "--" + s.name + "-timeout=-1s"} {
				o := DefaultControllerOptions()
				fs := flag.NewFlagSet("test", flag.ContinueOnError)
				o.AddFlags(fs)
				if err := fs.Parse([]string{bad}); err != nil {
					t.Fatal(err)
				}
				flagName, _, _ := strings.Cut(bad, "=")
				if err := validateTuning(&o); err == nil || !strings.Contains(err.Error(), flagName) {
					t.Errorf("%s: validateTuning = %v, want an error naming %s", bad, err, flagName)
				}
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			o := DefaultControllerOptions()
			o.AddFlags(fs)
			if err := validateTuning(&o); err != nil {
				t.Errorf("defaults: validateTuning = %v", err)
			}
			for _, name := range []string{s.name + "-worker-threads", s.name + "-timeout"} {
				f := fs.Lookup(name)
				if f == nil {
					t.Fatalf("--%s is not registered", name)
				}
				if f.DefValue != "0" && f.DefValue != "0s" {
					t.Errorf("--%s defaults to %q, want 0 (unset: the global flag applies)", name, f.DefValue)
				}
				if !strings.Contains(f.Usage, s.tuning.sidecar) {
					t.Errorf("--%s usage %q does not name %s", name, f.Usage, s.tuning.sidecar)
				}
			}
		})
	}
}

// The global flags' help names every controller and its sidecar's default.
func TestGlobalTuningUsage(t *testing.T) {
	var common hub.Options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	common.AddFlags(fs)
	o := DefaultControllerOptions()
	o.AddFlags(fs)
	for _, s := range controllerSpecs {
		for flagName, want := range map[string]string{
			"controllers":    s.name,
			"worker-threads": fmt.Sprintf("%s %d", s.name, s.tuning.defaults.Workers),
			"timeout":        fmt.Sprintf("%s %s", s.name, s.tuning.defaults.Timeout),
		} {
			if u := fs.Lookup(flagName).Usage; !strings.Contains(u, want) {
				t.Errorf("--%s usage %q lacks %q", flagName, u, want)
			}
		}
	}
}
