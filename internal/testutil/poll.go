package testutil

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// pollInterval is short: the API server and the hub under test are local.
const pollInterval = 100 * time.Millisecond

// Eventually polls cond until it holds and fails the test when timeout passes
// first or cond returns an error.
func Eventually(t testing.TB, ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// EventuallyTolerant is Eventually for conditions whose errors are transient
// (API errors on a busy machine): an error means "not yet", and the last one
// is reported if timeout passes.
func EventuallyTolerant(t testing.TB, ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(context.Context) (bool, error) {
		ok, err := cond()
		if err != nil {
			last = err
		}
		return ok && err == nil, nil
	})
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v (last error: %v)", timeout, what, err, last)
	}
}
