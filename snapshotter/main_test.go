package snapshotter

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The snapshot module's generated informers (client/v8 v8.7.0) do not tell
	// the reflector that the fake clientset cannot stream lists, so with
	// client-go's default WatchListClient the fake informers would never sync.
	// Real API servers support it; only the fake-backed unit tests opt out.
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
