package testutil

import (
	"regexp"
	"strings"
	"testing"
)

var nonDNS = regexp.MustCompile(`[^a-z0-9]+`)

// ShortName is the test's name made DNS-safe and cut to 40 characters: a
// name of its own for the test's fake driver, so hubs of other tests ignore
// its objects.
func ShortName(t testing.TB) string {
	short := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(short) > 40 {
		short = short[:40]
	}
	return short
}
