// Package guest holds the tests that run inside the NVMe/TCP test VM as its
// /test (see package test/vm, which builds them with -tags vmguest, boots the
// VM and checks the result). Without the tag the package has no tests, and the
// tests skip unless /init set CSI_HUB_VM=1: they rewrite configfs and connect
// NVMe devices, which only a throw-away VM should have done to it.
package guest
