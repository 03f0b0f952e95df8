// Package testutil holds helpers shared by the tests of several packages:
// klog capture, polling, Kubernetes event look-ups and small file I/O. It is
// imported only from _test.go files.
package testutil
