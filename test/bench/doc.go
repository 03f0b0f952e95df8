// Package bench measures csi-hub against a real control plane, side by side
// with the official sidecar it replaces: how fast 100 PVCs are provisioned and
// bound at --kube-api-qps 5 and 10 (csi-hub and external-provisioner), how fast
// 100 VolumeAttachments are attached at QPS 5 (csi-hub and external-attacher),
// how many API writes each volume costs, and each process's peak RSS.
//
// Both processes talk to the API server through one counting proxy, so their
// writes are counted the same way. Run:
//
//	go test -run '^$' -bench . -benchtime 1x ./test/bench/
package bench
