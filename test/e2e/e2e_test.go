package e2e

import "testing"

// TestE2E runs the volume scenarios in parallel (each in its own namespace, so
// the suite fits its time budget on two cores), then checks that deleting
// everything left nothing behind and that the hub never hit its RBAC limits.
func TestE2E(t *testing.T) {
	needCluster(t)
	t.Run("Volumes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"DataSurvivesPodDeletion", testDataSurvivesPodDeletion},
			{"BlockVolume", testBlockVolume},
			{"SnapshotRestore", testSnapshotRestore},
			{"GroupSnapshot", testGroupSnapshot},
			{"Clone", testClone},
			{"OnlineExpansion", testOnlineExpansion},
			{"OfflineExpansion", testOfflineExpansion},
			{"StatefulSet", testStatefulSet},
			{"ExamplesValid", testExamplesValid},
			{"NVMeVariantValid", testNVMeVariantValid},
			{"FlowPage", testFlowPage},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t)
			})
		}
	})
	t.Run("DeletingEverythingLeavesNothing", testDeletingEverythingLeavesNothing)
	t.Run("HubNeverForbidden", testHubNeverForbidden)
}
