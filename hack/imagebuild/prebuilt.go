package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// prebuiltSpecs turns "-prebuilt REF=BINARY,..." into images holding one static
// binary as their entrypoint, under the full reference REF: the official sidecars
// the repo builds from their Go modules (hack/ensure-sidecars.sh), so the swap
// tests deploy them under their upstream image names without pulling anything.
func prebuiltSpecs(list string) (map[string]imageSpec, error) {
	out := map[string]imageSpec{}
	for _, item := range strings.Split(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		ref, bin, ok := strings.Cut(item, "=")
		if !ok || ref == "" || bin == "" {
			return nil, fmt.Errorf("-prebuilt: %q is not REF=BINARY", item)
		}
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("-prebuilt %s: %w", ref, err)
		}
		base := filepath.Base(bin)
		out[ref] = imageSpec{name: base, build: func(*builder) (*rootfs, v1.Config, error) {
			fs := newRootfs()
			fs.addFile("/"+base, bin)
			return fs, v1.Config{Entrypoint: []string{"/" + base}, Env: []string{"PATH=" + defaultPath}}, nil
		}}
	}
	return out, nil
}

func runPrebuilt(out, list string) error {
	specs, err := prebuiltSpecs(list)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for ref, spec := range specs {
		file := filepath.Join(out, spec.name+".tar")
		if err := writeImage(&builder{}, spec, ref, file); err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		fmt.Printf("%s\t%s\n", ref, file)
	}
	return nil
}
