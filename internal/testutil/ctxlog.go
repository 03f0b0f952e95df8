package testutil

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// CtxLog is what was logged through the logger of a context made by
// LogContext: only lines logged with klog.FromContext(ctx) land here, never
// those of the global klog functions, so a test can tell the two apart.
type CtxLog struct {
	buf ktesting.Buffer
}

// LogContext returns ctx with a test logger (verbosity 5) that keeps every
// entry in memory; the entries are also printed with t.Log.
func LogContext(t testing.TB, ctx context.Context) (context.Context, *CtxLog) {
	t.Helper()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true), ktesting.Verbosity(5)))
	u, ok := logger.GetSink().(ktesting.Underlier)
	if !ok {
		t.Fatal("ktesting logger without a buffer")
	}
	return klog.NewContext(ctx, logger), &CtxLog{buf: u.GetBuffer()}
}

// Entries returns the entries logged so far.
func (l *CtxLog) Entries() ktesting.Log { return l.buf.Data() }

// String returns the entries as klog-like text (for failure messages).
func (l *CtxLog) String() string { return l.buf.String() }

// Find returns the entries whose message contains msg.
func (l *CtxLog) Find(msg string) ktesting.Log {
	var out ktesting.Log
	for _, e := range l.Entries() {
		if strings.Contains(e.Message, msg) {
			out = append(out, e)
		}
	}
	return out
}

// Value returns the value of key in e, from its WithValues pairs or its own,
// and whether it was there.
func Value(e ktesting.LogEntry, key string) (any, bool) {
	for _, kv := range [][]any{e.WithKVList, e.ParameterKVList} {
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok && k == key {
				return kv[i+1], true
			}
		}
	}
	return nil, false
}

// HasValue reports whether e carries key with a value printing as want.
func HasValue(e ktesting.LogEntry, key, want string) bool {
	v, ok := Value(e, key)
	return ok && fmt.Sprint(v) == want
}
