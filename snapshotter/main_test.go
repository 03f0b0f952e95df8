package snapshotter_test

import (
	"os"
	"sync/atomic"
	"testing"

	clientfeatures "k8s.io/client-go/features"

	"github.com/csi-hub/csi-hub/test/cluster"
)

// The *_integration_test.go files (package snapshotter_test) test the
// snapshotter against a real control plane (etcd, kube-apiserver,
// kube-controller-manager, the snapshot CRDs and the real snapshot-controller
// from test/cluster) and test/fakedriver over a real CSI socket, with
// csi-hub's core running in-process (internal/hubtest). The unit tests beside
// them (package snapshotter) use fakes only and run in every mode.
//
// This is the binary's one TestMain, for both packages. In unit mode
// (CSI_HUB_UNIT=1 or -short) cluster.Main starts nothing and every test that
// asks cluster.Shared or cluster.StartT for a control plane skips.
func TestMain(m *testing.M) {
	clientfeatures.ReplaceFeatureGates(gates)
	os.Exit(cluster.Main(m, cluster.Options{WithSnapshotController: true}))
}

// gates is client-go's feature gates (KUBE_FEATURE_* environment variables
// and client-go's defaults) with WatchListClient off except while an
// integration test runs: a stopgap for TestResyncPeriod, the one fake-backed
// unit test that still builds its informers as production does.
//
// A reflector asks its ListWatch whether the client can stream lists
// (client-go v0.37.2 tools/cache/reflector.go:362,
// watchlist.DoesClientNotSupportWatchListSemantics); the fake clientsets say
// they cannot (IsWatchListSemanticsUnSupported), and client-go's generated
// informers pass that on by wrapping their ListWatch with
// cache.ToListWatcherWithWatchListSemantics(lw, client)
// (tools/cache/listwatch.go:157). The snapshot module's generated informers
// (client/v8 v8.7.0) do not wrap theirs, so with WatchListClient on (client-go's
// default since 1.35) an informer over the fake snapshot clientset asks for a
// streaming list, never gets the initial-events-end bookmark and never syncs.
// The fake-backed unit tests that start informers therefore register them
// with fakeInformer (fakeinformer_test.go), which wraps the ListWatch. All but
// TestResyncPeriod do; once resync_test.go calls fakeInformer for contents and
// classes after hub.NewSnapshotAPI, delete gates, realAPI and its call in
// newBareEnv, leaving TestMain a plain cluster.Main.
//
// Until then: integration tests run one at a time (none calls t.Parallel, nor
// does any unit test of the binary), each takes realAPI for its lifetime in
// newBareEnv, before its hub starts an informer, and a reflector reads the
// gate once, when it is made; so every informer of an integration test runs
// with client-go's own WatchListClient setting, as in production
// (TestOneWatchPerResource checks that the hub's informers stream their
// lists), and every fake-backed informer of a unit test with it off.
var gates = &watchListGate{Gates: clientfeatures.FeatureGates()}

type watchListGate struct {
	clientfeatures.Gates
	realAPI atomic.Int32 // integration tests running
}

func (g *watchListGate) Enabled(f clientfeatures.Feature) bool {
	if f == clientfeatures.WatchListClient && g.realAPI.Load() == 0 {
		return false
	}
	return g.Gates.Enabled(f)
}

// realAPI gives t client-go's own feature gates until it ends (see gates).
func realAPI(t testing.TB) {
	gates.realAPI.Add(1)
	t.Cleanup(func() { gates.realAPI.Add(-1) })
}
