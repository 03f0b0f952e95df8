package nvme

import (
	"regexp"
	"testing"
)

func TestSerialFitsTwentyCharacters(t *testing.T) {
	for id, want := range map[string]string{
		"vol-1":                             "vol-1",
		"vol-0123456789abcdef":              "vol-0123456789abcdef", // exactly 20: kept verbatim
		"vol-0123456789abcdef0":             "vol0123456789abcdef0", // EBS style: dash dropped
		"vol-0123456789abcdef0123456789abc": "vol0123456789abcdef0",
		"pvc-0123456789abcdef0123":          "pvc-0123456789abcdef",
	} {
		got := Serial(id)
		if got != want || len(got) > 20 {
			t.Errorf("Serial(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestNamespaceUUIDIsStableAndDistinct(t *testing.T) {
	a, b := NamespaceUUID("vol-0123456789abcdef0123"), NamespaceUUID("vol-0123456789abcdef0124")
	if a != NamespaceUUID("vol-0123456789abcdef0123") {
		t.Error("UUID not deterministic")
	}
	if a == b {
		t.Error("volumes sharing a serial got the same UUID")
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) {
		t.Errorf("UUID %q is not a version 8 RFC UUID", a)
	}
}

func TestNQNRoundTrip(t *testing.T) {
	id, ok := VolumeIDFromNQN(SubsystemNQN("vol-9"))
	if !ok || id != "vol-9" {
		t.Errorf("VolumeIDFromNQN = %q, %v", id, ok)
	}
	if _, ok := VolumeIDFromNQN("nqn.2014-08.org.nvmexpress.discovery"); ok {
		t.Error("foreign NQN accepted")
	}
}

func TestValidateVolumeID(t *testing.T) {
	for _, bad := range []string{"", "a/b", "has space", "tab\t", string(make([]byte, 210))} {
		if ValidateVolumeID(bad) == nil {
			t.Errorf("volume ID %q accepted", bad)
		}
	}
	if err := ValidateVolumeID("vol-0123456789abcdef"); err != nil {
		t.Error(err)
	}
}
