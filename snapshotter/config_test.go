package snapshotter

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func parse(t *testing.T, fs *flag.FlagSet, args ...string) {
	t.Helper()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
}

func TestNameFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if cfg.SnapshotNamePrefix != "snapshot" || cfg.SnapshotNameUUIDLength != -1 || cfg.ExtraCreateMetadata {
		t.Fatalf("defaults = %+v", cfg)
	}
	parse(t, fs, "--snapshot-name-prefix=snp", "--snapshot-name-uuid-length=12", "--extra-create-metadata")
	if cfg.SnapshotNamePrefix != "snp" || cfg.SnapshotNameUUIDLength != 12 || !cfg.ExtraCreateMetadata {
		t.Errorf("after parse = %+v", cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

// The provisioner registers --extra-create-metadata too; the snapshotter must
// then share it instead of panicking with "flag redefined".
func TestExtraCreateMetadataSharedWithProvisioner(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var provisioner bool
	fs.BoolVar(&provisioner, "extra-create-metadata", false, "provisioner's")
	cfg := DefaultConfig()
	cfg.AddFlags(fs)
	parse(t, fs, "--extra-create-metadata")
	if !provisioner || !cfg.ExtraCreateMetadata {
		t.Errorf("provisioner=%v snapshotter=%v, want both true", provisioner, cfg.ExtraCreateMetadata)
	}
}

// A deployment that had --extra-create-metadata on csi-provisioner only keeps
// CreateSnapshot free of the extra parameters with the snapshotter's override.
func TestSnapshotterOverridesSharedExtraCreateMetadata(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var provisioner bool
	fs.BoolVar(&provisioner, "extra-create-metadata", false, "provisioner's")
	cfg := DefaultConfig()
	cfg.AddFlags(fs)
	parse(t, fs, "--snapshotter-extra-create-metadata=false", "--extra-create-metadata")
	if !provisioner || cfg.extraCreateMetadata() {
		t.Errorf("provisioner=%v snapshotter=%v, want true and false", provisioner, cfg.extraCreateMetadata())
	}
	cfg = DefaultConfig()
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	fs.BoolVar(&provisioner, "extra-create-metadata", false, "provisioner's")
	cfg.AddFlags(fs)
	parse(t, fs, "--extra-create-metadata")
	if !cfg.extraCreateMetadata() {
		t.Error("without the override the snapshotter follows the shared flag")
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for flagName, mutate := range map[string]func(*Config){
		"--snapshot-name-uuid-length":      func(c *Config) { c.SnapshotNameUUIDLength = 0 },
		"--snapshot-name-prefix":           func(c *Config) { c.SnapshotNamePrefix = "" },
		"--groupsnapshot-name-uuid-length": func(c *Config) { c.GroupSnapshotNameUUIDLength = -2 },
		"--groupsnapshot-name-prefix":      func(c *Config) { c.GroupSnapshotNamePrefix = "" },
	} {
		cfg := DefaultConfig()
		mutate(&cfg)
		err := cfg.validate()
		if err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%s: validate() = %v, want an error naming the flag", flagName, err)
		}
	}
}

// --help must not panic on the shared flag (flag.PrintDefaults calls String
// on a zero value of each flag's type).
func TestHelpWithSharedFlag(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var provisioner bool
	fs.BoolVar(&provisioner, "extra-create-metadata", false, "provisioner's")
	cfg := DefaultConfig()
	cfg.AddFlags(fs)
	var out strings.Builder
	fs.SetOutput(&out)
	fs.PrintDefaults()
	if strings.Contains(out.String(), "panic") || !strings.Contains(out.String(), "-snapshot-name-prefix") {
		t.Errorf("help output:\n%s", out.String())
	}
}
