// Package integration tests the attacher against a real control plane
// (etcd, kube-apiserver and kube-controller-manager from test/cluster): the
// attach/detach controller creates and deletes the VolumeAttachments, the
// hub runs in-process, and the CSI driver is test/fakedriver (capabilities
// switched per test) or the companion plugin.
package integration
