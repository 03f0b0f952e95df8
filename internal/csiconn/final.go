package csiconn

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Final reports whether a failed CSI call certainly left no operation running
// in the driver: it answered with a gRPC status other than Canceled,
// DeadlineExceeded, Unavailable, ResourceExhausted and Aborted (operation
// pending). Those, and errors that are not gRPC statuses (the call may not
// have been answered), may hide an operation still in progress, so a caller
// must keep whatever protects its outcome (a being-created mark, a
// modification in progress).
func Final(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return false
	}
	return true
}
