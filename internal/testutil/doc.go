// Package testutil holds helpers shared by the tests of several packages:
// klog capture, polling, Kubernetes event look-ups, small file I/O, the local
// cluster lock, and unit mode (make unit: UnitMode, SkipUnit, and the
// RefuseInUnitMode guard the cluster and VM starters call). It is imported
// only from _test.go files and the test harnesses (test/cluster, test/vm).
package testutil
