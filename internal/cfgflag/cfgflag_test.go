package cfgflag

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	var c struct {
		d    time.Duration
		n    int
		s    string
		on   bool
		rate float64
	}
	table := func() []Flag {
		return []Flag{
			Duration(&c.d, "d", time.Second, "a duration", Positive[time.Duration]().If(&c.on)),
			Int(&c.n, "n", 1, "an int", MinusOneOrPositive("must be -1 or positive")),
			String(&c.s, "s", "x", "a string", NotEmpty()),
			Bool(&c.on, "on", false, "a bool"),
			Float64(&c.rate, "rate", 0.5, "a float"),
		}
	}
	Reset(table()...)
	if c.d != time.Second || c.n != 1 || c.s != "x" || c.on || c.rate != 0.5 {
		t.Fatalf("Reset: %+v", c)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	Add(fs, table()...)
	if f := fs.Lookup("d"); f == nil || f.DefValue != "1s" || f.Usage != "a duration" {
		t.Fatalf("-d: %+v", f)
	}
	if err := fs.Parse([]string{"-d=0", "-n=0", "-s="}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--n must be -1 or positive, got 0", "--s must not be empty", "--d must be positive, got 0s"} {
		if err := Check(table()...); err == nil || err.Error() != want {
			t.Fatalf("Check: %v, want %s", err, want)
		}
		switch {
		case c.n == 0:
			c.n = -1
		case c.s == "":
			c.s, c.on = "y", true // -d's rule applies only with -on
		}
	}
	c.d = time.Minute
	if err := Check(table()...); err != nil {
		t.Fatal(err)
	}
}

func TestMarked(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var b, given bool
	var s string
	fs.BoolVar(&b, "b", true, "a bool")
	fs.StringVar(&s, "s", "", "a string")
	fs.Lookup("b").Value = Marked[bool](fs.Lookup("b").Value, &given)
	fs.Lookup("s").Value = Marked[string](fs.Lookup("s").Value, new(bool))
	if err := fs.Parse([]string{"-b", "-s", "x"}); err != nil || !b || !given || s != "x" {
		t.Fatalf("parse: %v b=%v given=%v s=%q", err, b, given, s)
	}
	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	want := "  -b\ta bool (default true)\n  -s value\n    \ta string\n"
	if help.String() != want {
		t.Fatalf("help:\n%q\nwant\n%q", help.String(), want)
	}
}
