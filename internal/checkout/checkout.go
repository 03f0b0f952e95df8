// Package checkout finds the csi-hub checkout a test runs in. It imports
// nothing of the repository, so a light test binary stays light.
package checkout

import (
	"os"
	"path/filepath"
)

// Root is the csi-hub checkout: the nearest directory at or above the
// working directory that holds go.mod (go test runs a test binary in its
// package's directory). It does not use the source file's path from
// runtime.Caller, which make unit's -trimpath turns into an import path.
// It panics outside a checkout: no test can run there.
func Root() string {
	dir, err := os.Getwd()
	if err != nil {
		panic("checkout.Root: " + err.Error())
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if d == filepath.Dir(d) {
			panic("checkout.Root: no go.mod at or above " + dir)
		}
	}
}
