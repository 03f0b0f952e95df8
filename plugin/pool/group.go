package pool

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// GroupCopy is one member of a group copy: a new file ID copied from SrcID.
type GroupCopy struct {
	ID, SrcID string
}

// ErrGroupBusy is returned by CreateGroup when the sources kept being written
// and no attempt captured them all at one point in time.
var ErrGroupBusy = errors.New("the source volumes kept being written during every copy attempt")

// GroupOptions tune CreateGroup; zero values pick the defaults.
type GroupOptions struct {
	// Settle is how long a source must have been unchanged before a copy
	// starts: a write whose ctime update the kernel made just before the
	// first look may still be moving its data. Default 20ms.
	Settle time.Duration
	// Deadline bounds all attempts. Default 10s.
	Deadline time.Duration
	// BetweenCopies runs after each member's copy; tests use it to write to
	// the sources in the window a group copy must not let in.
	BetweenCopies func(i int)
}

// CreateGroup copies every member's source into its new file so that all
// copies show the sources at one point in time: no write to any source lands
// between the first and the last member's copy.
//
// The pool cannot pause the writers (the kernel's loop driver or nvmet write
// the backing files directly), so it copies optimistically and checks: the
// kernel updates a file's ctime on every write, and since Linux 6.13 a ctime
// that was looked at is followed by a distinct, fine-grained one. Each
// attempt reads every source's ctime, copies them all into temporary files,
// and reads the ctimes again; equal ctimes mean no write landed in between,
// and only then are the copies published under their final names. A changed
// source discards the attempt and the next one starts. The copies are
// reflinks where the filesystem has them, so an attempt takes microseconds.
//
// After a crash the temporary files are removed by Reconcile; a crash while
// the copies are being published leaves some final files, which the caller's
// group record (still creating) makes Reconcile remove.
func (p *Pool) CreateGroup(members []GroupCopy, opts GroupOptions) error {
	if opts.Settle <= 0 {
		opts.Settle = 20 * time.Millisecond
	}
	if opts.Deadline <= 0 {
		opts.Deadline = 10 * time.Second
	}
	deadline := time.Now().Add(opts.Deadline)
	for attempt := 0; ; attempt++ {
		ok, err := p.tryGroup(members, opts)
		if err != nil || ok {
			return mapNoSpace(err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (%d attempts in %s)", ErrGroupBusy, attempt+1, opts.Deadline)
		}
		time.Sleep(min(opts.Settle<<min(attempt, 4), time.Second))
	}
}

// changeStamp is what a write to a file changes.
type changeStamp struct {
	ctime unix.Timespec
	size  int64
}

func (p *Pool) stamps(members []GroupCopy) ([]changeStamp, error) {
	out := make([]changeStamp, len(members))
	for i, m := range members {
		var st unix.Stat_t
		if err := unix.Stat(p.Path(m.SrcID), &st); err != nil {
			return nil, fmt.Errorf("source %s: %w", m.SrcID, err)
		}
		out[i] = changeStamp{ctime: st.Ctim, size: st.Size}
	}
	return out, nil
}

// tryGroup makes one attempt; ok is false when a source changed meanwhile.
func (p *Pool) tryGroup(members []GroupCopy, opts GroupOptions) (ok bool, err error) {
	before, err := p.stamps(members)
	if err != nil {
		return false, err
	}
	settled := time.Now().Add(-opts.Settle)
	for _, s := range before {
		if time.Unix(s.ctime.Unix()).After(settled) {
			return false, nil // written just now: a write may still be landing
		}
	}
	temps := make([]*os.File, 0, len(members))
	defer func() {
		for _, f := range temps {
			f.Close()
			if !ok || err != nil {
				os.Remove(f.Name())
			}
		}
	}()
	for i, m := range members {
		f, err := p.copyToTemp(m)
		if f != nil {
			temps = append(temps, f)
		}
		if err != nil {
			return false, err
		}
		if opts.BetweenCopies != nil {
			opts.BetweenCopies(i)
		}
	}
	after, err := p.stamps(members)
	if err != nil {
		return false, err
	}
	for i := range before {
		if before[i] != after[i] {
			return false, nil
		}
	}
	// The cut is taken; make it durable, then give the files their names.
	for _, f := range temps {
		if err := f.Sync(); err != nil {
			return false, err
		}
	}
	for i, f := range temps {
		if err := os.Rename(f.Name(), p.Path(members[i].ID)); err != nil {
			for _, done := range members[:i] {
				os.Remove(p.Path(done.ID))
			}
			return false, err
		}
	}
	return true, p.syncDir()
}

func (p *Pool) copyToTemp(m GroupCopy) (*os.File, error) {
	src, err := os.Open(p.Path(m.SrcID))
	if err != nil {
		return nil, fmt.Errorf("open source %s: %w", m.SrcID, err)
	}
	defer src.Close()
	f, err := os.CreateTemp(p.dir, tempPrefix+m.ID+"-")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		return f, err
	}
	return f, copyFile(f, src)
}
