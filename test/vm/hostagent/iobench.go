package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/csi-hub/csi-hub/test/vm/agentapi"
)

const (
	seqBlock  = 1 << 20
	randBlock = 4 << 10
)

func (a *agent) ioBench(w http.ResponseWriter, r *http.Request) {
	var req agentapi.IOBenchRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Path == "" || req.MiB <= 0 || req.RandomSeconds <= 0 {
		http.Error(w, fmt.Sprintf("bad request (want path, mib > 0, randomSeconds > 0): %v", err), http.StatusBadRequest)
		return
	}
	res, err := ioBench(req)
	if err != nil {
		res.Err = err.Error()
	}
	json.NewEncoder(w).Encode(res)
}

// ioBench writes req.MiB sequentially with O_DIRECT in 1 MiB blocks (each
// stamped with its offset) and syncs, reads them back checking the stamps,
// then reads random 4 KiB blocks of that range for req.RandomSeconds.
func ioBench(req agentapi.IOBenchRequest) (agentapi.IOBenchResult, error) {
	res := agentapi.IOBenchResult{Path: req.Path}
	f, err := os.OpenFile(req.Path, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return res, err
	}
	defer f.Close()
	if res.SizeBytes, err = f.Seek(0, io.SeekEnd); err != nil {
		return res, err
	}
	n := int64(req.MiB) * seqBlock
	if n > res.SizeBytes {
		return res, fmt.Errorf("%s has %d bytes, fewer than %d MiB", req.Path, res.SizeBytes, req.MiB)
	}
	res.Bytes = n
	// O_DIRECT wants aligned buffers: an anonymous mapping is page aligned.
	buf, err := syscall.Mmap(-1, 0, seqBlock, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return res, err
	}
	defer syscall.Munmap(buf)
	if _, err := rand.Read(buf); err != nil {
		return res, err
	}
	start := time.Now()
	for off := int64(0); off < n; off += seqBlock {
		binary.LittleEndian.PutUint64(buf, uint64(off))
		if _, err := f.WriteAt(buf, off); err != nil {
			return res, fmt.Errorf("write at %d: %w", off, err)
		}
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("sync: %w", err)
	}
	res.WriteSeconds = time.Since(start).Seconds()
	res.WriteMiBps = float64(n) / seqBlock / res.WriteSeconds

	start = time.Now()
	for off := int64(0); off < n; off += seqBlock {
		if _, err := f.ReadAt(buf, off); err != nil {
			return res, fmt.Errorf("read at %d: %w", off, err)
		}
		if got := binary.LittleEndian.Uint64(buf); got != uint64(off) {
			return res, fmt.Errorf("the block at %d reads back stamped %d", off, got)
		}
	}
	res.ReadSeconds = time.Since(start).Seconds()
	res.ReadMiBps = float64(n) / seqBlock / res.ReadSeconds

	small := buf[:randBlock]
	blocks := n / randBlock
	dur := time.Duration(req.RandomSeconds * float64(time.Second))
	start = time.Now()
	for time.Since(start) < dur {
		off := mrand.Int64N(blocks) * randBlock
		if _, err := f.ReadAt(small, off); err != nil {
			return res, fmt.Errorf("random read at %d: %w", off, err)
		}
		res.RandomReads++
	}
	res.RandomSeconds = time.Since(start).Seconds()
	res.RandomIOPS = float64(res.RandomReads) / res.RandomSeconds
	return res, nil
}
