package plugin

import (
	"errors"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
)

func errorf(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, format, args...)
}

// internalOr keeps an error that already is a gRPC status (a transport may say
// NotFound for an unknown node) and maps storage errors to their CSI codes.
func internalOr(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, store.ErrCapacity), errors.Is(err, pool.ErrNoSpace), errors.Is(err, unix.ENOSPC):
		return errorf(codes.ResourceExhausted, "%s: %v", what, err)
	}
	return errorf(codes.Internal, "%s: %v", what, err)
}

func abortedBusy(key string) error {
	return errorf(codes.Aborted, "an operation on %s is already in progress", key)
}
