package csiconn

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFinal(t *testing.T) {
	for code, want := range map[codes.Code]bool{
		codes.InvalidArgument: true, codes.NotFound: true, codes.Internal: true, codes.AlreadyExists: true,
		codes.DeadlineExceeded: false, codes.Unavailable: false, codes.Aborted: false,
		codes.ResourceExhausted: false, codes.Canceled: false,
	} {
		if got := Final(status.Error(code, "x")); got != want {
			t.Errorf("Final(%s) = %v, want %v", code, got, want)
		}
	}
	if Final(errors.New("not a gRPC error")) {
		t.Error("a non-gRPC error must not count as final")
	}
}
