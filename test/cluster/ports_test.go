package cluster

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestFreePortsAreDistinctBindableAndNotEphemeral(t *testing.T) {
	ports, err := freePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralPortLow()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d returned twice", p)
		}
		seen[p] = true
		if low > 11000 && (p < 10000 || p >= low) {
			t.Errorf("port %d outside [10000, %d): outgoing connections could take it", p, low)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d not bindable after freePorts: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestIsAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = net.Listen("tcp", l.Addr().String())
	if !isAddrInUse(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("isAddrInUse(%v) = false", err)
	}
	if isAddrInUse(errors.New("unknown flag")) || isAddrInUse(nil) {
		t.Error("isAddrInUse true for an unrelated error")
	}
}
