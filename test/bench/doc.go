// Package bench measures csi-hub against a real control plane, side by side
// with the official sidecar it replaces: how fast 100 PVCs are provisioned and
// bound at --kube-api-qps 5 and 10 (csi-hub and external-provisioner), how fast
// 100 VolumeAttachments are attached at QPS 5 (csi-hub and external-attacher),
// how many API writes each volume costs, and each process's peak RSS.
//
// Both processes talk to the API server through one counting proxy, so their
// writes are counted the same way. Run:
//
//	go test -run '^$' -bench 'Provision100|Attach100|InUsePods10k' -benchtime 1x ./test/bench/
//
// At scale (`make scale`): BenchmarkScale preloads 1,000/5,000/10,000 bound
// volumes and measures csi-hub beside the official provisioner, attacher,
// resizer and snapshotter (start-up, RSS, LIST/WATCH, idle CPU, 100 new
// claims); BenchmarkScaleKill kills csi-hub with SIGKILL during 500 creations
// and 500 deletions with 5,000 volumes present and fails on any leaked or
// duplicated backend volume.
package bench
