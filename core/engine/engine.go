package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nightjar-backup/nightjar/core"
)

// NamedSink is a configured sink.
type NamedSink struct {
	Name string
	Sink core.Sink
}

// Observer follows a run, e.g. to draw progress. Its methods are called from the run's
// goroutine; done counts raw bytes read from the source and may be polled concurrently.
type Observer interface {
	ArtifactStart(spec core.ArtifactSpec, estimate int64, done *atomic.Int64)
	ArtifactDone(spec core.ArtifactSpec, err error)
}

// Pipeline is everything one run needs, already built from config.
type Pipeline struct {
	Name       string
	Host       string
	Tags       []string
	Sources    []core.Source
	Transforms []core.Transform
	Sinks      []NamedSink
	Logger     *slog.Logger
	Observer   Observer // optional
	QueueDepth int      // chunks of 1 MiB queued per sink; default 4
	Now        func() time.Time
}

// SinkResult is what happened in one sink.
type SinkResult struct {
	Name      string
	Committed bool
	Err       error
	Bytes     int64 // stored bytes
	Duration  time.Duration
	Manifest  *core.Manifest // the committed manifest
}

// Result is one run's outcome.
type Result struct {
	ID        core.SnapshotID
	Started   time.Time
	Finished  time.Time
	Artifacts []core.Artifact // as stored in transformed (blob) sinks, or raw when none
	Sinks     []SinkResult
}

// Committed counts the sinks that committed.
func (r *Result) Committed() int {
	n := 0
	for _, s := range r.Sinks {
		if s.Committed {
			n++
		}
	}
	return n
}

type sinkState struct {
	name     string
	sink     core.Sink
	raw      bool
	err      error
	start    time.Time
	artifact []core.Artifact
	bytes    int64
}

// Run makes one snapshot in every sink. It returns an error wrapping core.ErrPartial when
// some sinks committed and others failed, another error when none committed.
func Run(ctx context.Context, p *Pipeline) (*Result, error) {
	if len(p.Sources) == 0 || len(p.Sinks) == 0 {
		return nil, errors.New("engine: a pipeline needs at least one source and one sink")
	}
	now := p.Now
	if now == nil {
		now = time.Now
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	depth := p.QueueDepth
	if depth <= 0 {
		depth = 4
	}
	started := now().UTC()
	res := &Result{ID: core.NewSnapshotID(started), Started: started}
	log = log.With("snapshot", res.ID)

	var states []*sinkState
	for _, s := range p.Sinks {
		rs, ok := s.Sink.(core.RawSink)
		states = append(states, &sinkState{name: s.Name, sink: s.Sink, raw: ok && rs.WantsRaw(), start: started})
	}
	// Each sink's queue holds up to depth chunks and its pump one more; the raw and the
	// encoded fan-out each fill one, and each one's hash holds up to chunkHashDepth+1.
	pool := newChunkPool(len(p.Sinks)*(depth+1) + 2*(chunkHashDepth+2))

	var blobArtifacts []core.Artifact
	for _, src := range p.Sources {
		art, err := runArtifact(ctx, p, res.ID, src, states, depth, pool, log)
		if err != nil {
			// A source failure fails the run everywhere: no sink commits.
			for _, st := range states {
				if st.err == nil {
					st.err = fmt.Errorf("not committed: %w", err)
				}
			}
			cleanupFailed(ctx, res.ID, states, log)
			res.Finished = now().UTC()
			res.Sinks = results(states)
			return res, err
		}
		blobArtifacts = append(blobArtifacts, art)
		if live(states) == 0 {
			break
		}
	}
	res.Artifacts = blobArtifacts

	finished := now().UTC()
	var wg sync.WaitGroup
	for _, st := range states {
		if st.err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &core.Manifest{
				Format: core.ManifestFormat, ID: res.ID, Pipeline: p.Name, Host: p.Host,
				Started: started, Finished: finished, Tags: p.Tags, Artifacts: st.artifact,
			}
			if err := st.sink.Commit(ctx, m); err != nil {
				st.err = fmt.Errorf("commit: %w", err)
				return
			}
			st.artifact = m.Artifacts
			log.Info("snapshot committed", "sink", st.name, "bytes", st.bytes)
		}()
	}
	wg.Wait()
	cleanupFailed(ctx, res.ID, states, log)
	res.Finished = now().UTC()
	res.Sinks = results(states)
	for i := range res.Sinks {
		if res.Sinks[i].Committed {
			res.Sinks[i].Manifest = &core.Manifest{
				Format: core.ManifestFormat, ID: res.ID, Pipeline: p.Name, Host: p.Host,
				Started: started, Finished: finished, Tags: p.Tags, Artifacts: states[i].artifact,
			}
		}
	}
	switch ok := res.Committed(); {
	case ok == len(states):
		return res, nil
	case ok > 0:
		return res, fmt.Errorf("%w: %s", core.ErrPartial, failedSummary(states))
	default:
		return res, fmt.Errorf("no sink committed: %s", failedSummary(states))
	}
}

func live(states []*sinkState) int {
	n := 0
	for _, st := range states {
		if st.err == nil {
			n++
		}
	}
	return n
}

func failedSummary(states []*sinkState) string {
	var s string
	for _, st := range states {
		if st.err != nil {
			if s != "" {
				s += "; "
			}
			s += fmt.Sprintf("sink %q: %v", st.name, st.err)
		}
	}
	return s
}

func results(states []*sinkState) []SinkResult {
	out := make([]SinkResult, len(states))
	for i, st := range states {
		out[i] = SinkResult{Name: st.name, Committed: st.err == nil, Err: st.err, Bytes: st.bytes, Duration: time.Since(st.start)}
	}
	return out
}

// cleanupFailed removes what failed sinks stored of this snapshot, best effort: anything
// left is an incomplete snapshot that prune removes after its grace period.
func cleanupFailed(ctx context.Context, id core.SnapshotID, states []*sinkState, log *slog.Logger) {
	for _, st := range states {
		ls, ok := st.sink.(core.LeftoverSink)
		if st.err == nil || !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := ls.DeleteLeftover(cctx, id); err != nil {
			log.Warn("could not remove the failed snapshot's objects; prune removes them after the grace period", "sink", st.name, "err", err)
		}
		cancel()
	}
}

// streamHash is the sha256 of a stream, computed on another goroutine: an asyncHash, which
// copies what it is written, or the hash of a fan-out that the stream goes into (fanout's
// hashed), which ignores Write and hashes the fan-out's chunks.
type streamHash interface {
	Write(p []byte)
	Sum() string
	stop()
}

// hashCounter hashes and counts what passes through to w.
type hashCounter struct {
	w    io.Writer
	h    streamHash
	n    int64
	done *atomic.Int64 // optional progress counter
}

func (hc *hashCounter) Write(p []byte) (int, error) {
	n, err := hc.w.Write(p)
	hc.h.Write(p[:n])
	hc.n += int64(n)
	if hc.done != nil {
		hc.done.Add(int64(n))
	}
	return n, err
}

func (hc *hashCounter) sum() string { return hc.h.Sum() }

// tee writes to two writers in turn (raw sinks and the transform chain). Each side has its
// own queueing, so neither is an unbounded buffer.
type tee struct{ a, b io.Writer }

func (t tee) Write(p []byte) (int, error) {
	if _, err := t.a.Write(p); err != nil {
		return 0, err
	}
	return t.b.Write(p)
}

// runArtifact streams one source to every live sink. It returns the blob-side artifact.
func runArtifact(ctx context.Context, p *Pipeline, id core.SnapshotID, src core.Source, states []*sinkState, depth int, pool chunkPool, log *slog.Logger) (core.Artifact, error) {
	spec := src.Describe()
	var rawSinks, blobSinks []*sinkState
	for _, st := range states {
		switch {
		case st.err != nil:
		case st.raw:
			rawSinks = append(rawSinks, st)
		default:
			blobSinks = append(blobSinks, st)
		}
	}
	object := spec.Filename
	var descs []map[string]string
	for _, t := range p.Transforms {
		object += t.Ext()
		descs = append(descs, t.Descriptor())
	}

	var done atomic.Int64
	estimate := int64(-1)
	if p.Observer != nil {
		if sz, ok := src.(core.Sizer); ok {
			estimate = sz.EstimateSize(ctx)
		}
		p.Observer.ArtifactStart(spec, estimate, &done)
	}

	srcCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rawFan := newFanout(ctx, id, spec.Filename, rawSinks, depth, pool)
	blobFan := newFanout(ctx, id, object, blobSinks, depth, pool)
	// Transform chain, built from the sink end: raw → t0 → t1 → ... → stored. Without
	// transforms the stored bytes are the raw bytes, hashed once, as raw.
	var stored *hashCounter
	var w io.Writer = blobFan
	if len(p.Transforms) > 0 {
		stored = &hashCounter{w: blobFan, h: blobFan.hashed()}
		w = stored
	}
	var encoders []io.WriteCloser
	var buildErr error
	if len(blobSinks) > 0 {
		for i := len(p.Transforms) - 1; i >= 0; i-- {
			enc, err := p.Transforms[i].Encode(w)
			if err != nil {
				buildErr = fmt.Errorf("transform %s: %w", p.Transforms[i].Descriptor()["type"], err)
				break
			}
			encoders = append(encoders, enc)
			w = enc
		}
	}
	var rawDest io.Writer
	switch {
	case len(blobSinks) == 0:
		rawDest = rawFan
	case len(rawSinks) == 0:
		rawDest = w
	default:
		rawDest = tee{rawFan, w}
	}
	// The raw stream is hashed from the fan-out it goes into, if one gets all of it; only
	// one that goes into transforms alone needs a hash of its own.
	raw := &hashCounter{w: rawDest, done: &done}
	switch {
	case len(rawSinks) > 0:
		raw.h = rawFan.hashed()
	case len(blobSinks) > 0 && len(p.Transforms) == 0:
		raw.h = blobFan.hashed()
	default:
		raw.h = newAsyncHash()
	}
	defer raw.h.stop()

	var meta map[string]string
	err := buildErr
	if err == nil {
		meta, err = src.Snapshot(srcCtx, raw)
		if err == nil {
			err = srcCtx.Err()
		}
		if err != nil {
			err = fmt.Errorf("source %q: %w", spec.Name, err)
		}
	}
	// Close encoders outermost first: each Close flushes into the next. After a failure
	// too: an encoder may write into the next on its own goroutines until its Close
	// returns (zstd's parallel frames do), and the fanout below is about to be closed.
	for i := len(encoders) - 1; i >= 0; i-- {
		if cerr := encoders[i].Close(); cerr != nil && err == nil {
			err = fmt.Errorf("source %q: flush transforms: %w", spec.Name, cerr)
		}
	}
	rawFan.finish(err)
	blobFan.finish(err)
	if p.Observer != nil {
		p.Observer.ArtifactDone(spec, err)
	}
	if err != nil {
		return core.Artifact{}, err
	}

	rawSum := raw.sum()
	storedN, storedSum := raw.n, rawSum
	if stored != nil {
		storedN, storedSum = stored.n, stored.sum()
	}
	base := core.Artifact{Name: spec.Name, Source: spec.Kind, Size: raw.n, SHA256: rawSum, Meta: meta}
	blobArt := base
	blobArt.Object, blobArt.StoredSize, blobArt.StoredSHA256, blobArt.Transforms = object, storedN, storedSum, descs
	if blobArt.Transforms == nil {
		blobArt.Transforms = []map[string]string{}
	}
	if len(blobSinks) == 0 {
		blobArt.Object, blobArt.StoredSize, blobArt.StoredSHA256 = spec.Filename, raw.n, rawSum
	}
	record := func(f *fanout, art core.Artifact) {
		for _, st := range f.streams {
			if st.err != nil {
				st.sink.err = fmt.Errorf("put %s: %w", art.Object, st.err)
				log.Error("sink failed", "sink", st.sink.name, "artifact", spec.Name, "err", st.sink.err)
				continue
			}
			a := art
			a.Ref = st.stored.Ref
			st.sink.artifact = append(st.sink.artifact, a)
			st.sink.bytes += st.stored.Size
		}
	}
	rawArt := base
	rawArt.Object, rawArt.StoredSize, rawArt.StoredSHA256, rawArt.Transforms = spec.Filename, raw.n, rawSum, []map[string]string{}
	record(rawFan, rawArt)
	record(blobFan, blobArt)
	log.Info("artifact stored", "artifact", spec.Name, "raw_bytes", raw.n, "stored_bytes", blobArt.StoredSize)
	return blobArt, nil
}
