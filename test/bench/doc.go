// Package bench measures csi-hub against a real control plane: how fast 100
// PVCs are provisioned and bound at --kube-api-qps 5 and 10, how many API writes
// each volume costs, and the hub's peak RSS; and, for attaching, the same
// figures for csi-hub and the official external-attacher side by side.
//
// Both processes talk to the API server through one counting proxy, so their
// writes are counted the same way. Run:
//
//	go test -run '^$' -bench . -benchtime 1x ./test/bench/
package bench
