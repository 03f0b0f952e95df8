package main

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sidecarFlag is one line of testdata/sidecar-flags.txt.
type sidecarFlag struct {
	name, def, source string
}

func readSidecarFlags(t *testing.T) []sidecarFlag {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "sidecar-flags.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []sidecarFlag
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 5 {
			t.Fatalf("malformed line %q: want flag default sidecar release file", line)
		}
		def := fields[1]
		if def == `""` {
			def = ""
		}
		out = append(out, sidecarFlag{name: fields[0], def: def, source: strings.Join(fields[2:], " ")})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("only %d flags listed; the list is incomplete", len(out))
	}
	return out
}

// switchingSection is the README's "Switching from the sidecars" section: the
// one place where csi-hub's deliberate differences are listed.
func switchingSection(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## Switching from the sidecars")
	if i < 0 {
		t.Fatal(`README.md has no "## Switching from the sidecars" section`)
	}
	s = s[i+3:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// Every flag of the six sidecars' current releases is accepted by csi-hub
// with the sidecar's default value; where csi-hub's default differs, the
// README's switching section names the flag and says why.
func TestSidecarFlags(t *testing.T) {
	readme := switchingSection(t)
	documented := func(name string) bool {
		return regexp.MustCompile("`--" + regexp.QuoteMeta(name) + "[`= ]").MatchString(readme)
	}
	for _, sf := range readSidecarFlags(t) {
		c := newCLI()
		c.fs.SetOutput(discard{})
		f := c.fs.Lookup(sf.name)
		if f == nil {
			t.Errorf("--%s (%s) is not a csi-hub flag", sf.name, sf.source)
			continue
		}
		if err := c.fs.Parse([]string{"--" + sf.name + "=" + sf.def}); err != nil {
			t.Errorf("--%s=%q (%s's default) is refused: %v", sf.name, sf.def, sf.source, err)
		}
		if f.DefValue != sf.def && !documented(sf.name) {
			t.Errorf("--%s defaults to %q in csi-hub, %q in %s, and the README's switching section does not explain it",
				sf.name, f.DefValue, sf.def, sf.source)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var _ = flag.ContinueOnError
