// Package cluster runs a real, local Kubernetes control plane for integration
// tests: etcd (Debian etcd-server), kube-apiserver and kube-controller-manager,
// optionally kube-scheduler and the CSI snapshot-controller with its CRDs.
// There is no kubelet; tests stand in for it with CreateNode, CreateCSINode and
// SetVolumesInUse.
//
// The Kubernetes binaries are built from source by hack/ensure-k8s.sh (and
// hack/ensure-snapshot-controller.sh) into ${CSI_HUB_CACHE:-~/.cache/csi-hub},
// once per machine; Start runs those scripts, which return at once when the
// binaries are present. Set CSI_HUB_K8S_BIN to a directory holding
// kube-apiserver etc. to use prebuilt binaries instead.
//
// Every cluster uses free loopback ports and a fresh directory, so clusters of
// several test packages run side by side and a crashed earlier run never
// blocks a new one.
//
// One cluster per test package, started from TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(cluster.Main(m, cluster.Options{WithSnapshotController: true}))
//	}
//
//	func TestSomething(t *testing.T) {
//		c := cluster.Shared(t) // skips or fails loudly if the cluster could not start
//		c.Client.CoreV1()...
//	}
//
// Or one cluster for a single test: c := cluster.StartT(t, cluster.Options{}).
//
// Start fails, and Shared/StartT skip (loudly, and never when CI=true), only
// for a missing prerequisite (errors wrapping ErrPrerequisite: no etcd,
// binaries that cannot be built). Root is not needed for the control plane.
// Run `make deps` first: a cold build inside a test binary eats into
// go test's default 10 minute timeout.
//
// Behaviour worth knowing when writing tests:
//   - kube-controller-manager runs all controllers (--controllers=*), so PVs
//     bind, PVCs get volume.kubernetes.io/storage-provisioner, pods on a
//     CreateNode node get VolumeAttachments, grown CSI PVCs get an
//     ExternalExpanding event (the storage-resizer annotation is set only for
//     migrated in-tree volumes, never for CSI PVs).
//   - Nodes from CreateNode stay Ready: the cluster renews their Leases.
//   - Detach needs SetVolumesInUse (see there).
//   - Feature gates and extra flags: Options.FeatureGates, Options.*Flags.
//   - Logs: LogTail/DumpLogs; Main and StartT dump them when tests fail.
//   - EnsureBinaries("kubelet") builds/finds other binaries of the same version.
package cluster
