// Package swap shows, on the machine's real single-node cluster (hack/cluster:
// kube-apiserver, kcm, scheduler, snapshot-controller, containerd, kubelet), the
// two ways operators put csi-hub in place:
//
//   - TestSwapSidecars: block.csi-hub.io deployed the classic way with the
//     official csi-provisioner, csi-attacher, csi-resizer and csi-snapshotter
//     (built from their Go modules, images made locally); then
//     manifests/components/replace-sidecars swaps csi-hub in, the objects the
//     sidecars made keep working (detach, restore, delete) and new ones
//     provision; then the swap back to the sidecars, where they handle what
//     csi-hub made.
//   - TestHelmInstall: `helm install` of charts/csi-hub, the volume story, and
//     `helm uninstall`.
//
// node-driver-registrar and livenessprobe are refused by the Go module proxy
// (403), so they cannot be built here: in the classic deployment csi-hub
// --mode=node stands in for the registrar and the liveness-probe containers are
// left out (stand-ins named in testdata/standins.yaml).
package swap
