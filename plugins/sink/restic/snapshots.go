package restic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nightjar-backup/nightjar/core"
)

// Tags on every restic snapshot the sink writes. restic's --tag a,b matches snapshots that
// carry both a and b.
const (
	tagNightjar       = "nightjar"
	tagPipelinePrefix = "nightjar-pipeline="
	tagSnapshotPrefix = "nightjar-snapshot="
	tagManifest       = "nightjar-manifest" // only on the manifest's restic snapshot
)

// filename is the stable name an object is stored under (--stdin-filename): restic shows it
// as the path /<pipeline>/<object>, the same in every run, so restic's own grouping (host
// and paths) keeps one line of history per artifact.
func (s *Sink) filename(object string) string { return s.pipeline + "/" + object }

func (s *Sink) tags(id core.SnapshotID) []string {
	return []string{tagNightjar, tagPipelinePrefix + s.pipeline, tagSnapshotPrefix + string(id)}
}

func checkObject(object string) error {
	switch {
	case object == core.ManifestName:
		return fmt.Errorf("object name %q is reserved", object)
	case object == "" || object == "." || object == ".." || strings.ContainsAny(object, "/\\\x00\n\r"):
		return fmt.Errorf("invalid object name %q: expected a plain file name", object)
	}
	return nil
}

// Put stores one artifact as one restic snapshot; Stored.Ref is its restic snapshot id
// (the short id with restic 0.14, which prints no other).
func (s *Sink) Put(ctx context.Context, id core.SnapshotID, object string, r io.Reader) (core.Stored, error) {
	if err := checkObject(object); err != nil {
		return core.Stored{}, s.errorf("put %s: %w", object, err)
	}
	if err := s.prepare(ctx); err != nil {
		return core.Stored{}, s.errorf("put %s/%s: %w", id, object, err)
	}
	s.startEarly(ctx, id)
	n, ref, err := s.backup(ctx, id, s.filename(object), nil, r)
	if err != nil {
		if e := s.takeEarly(id); e != nil {
			e.stop() // this snapshot will not be committed
		}
		return core.Stored{}, s.errorf("put %s/%s: %w", id, object, err)
	}
	s.mu.Lock()
	if s.stored[id] == nil {
		s.stored[id] = map[string]string{}
	}
	s.stored[id][object] = ref
	s.mu.Unlock()
	s.log.Debug("artifact stored as a restic snapshot", "object", object, "restic_snapshot", ref, "bytes", n)
	return core.Stored{Size: n, Ref: ref}, nil
}

// summary is the last line `restic backup --json` prints.
type summary struct {
	MessageType         string `json:"message_type"`
	TotalBytesProcessed int64  `json:"total_bytes_processed"`
	SnapshotID          string `json:"snapshot_id"`
}

// backup streams r into `restic backup --stdin` and returns the bytes read and the new
// restic snapshot's id. If r fails, restic is interrupted before it sees the end of its
// input, so it writes no snapshot of a truncated stream.
func (s *Sink) backup(ctx context.Context, id core.SnapshotID, filename string, extraTags []string, r io.Reader) (int64, string, error) {
	args := s.backupArgs(id, filename, extraTags)
	f := newFeed(r)
	defer f.close()
	var sum summary
	err := s.run.retryLocked(ctx, func() error {
		var out limitedBuffer
		out.max = 1 << 20
		p, stdin, _, err := s.run.start(ctx, args, true, &out)
		if err != nil {
			return err
		}
		defer stdin.Close()
		stop := make(chan struct{})
		werr := make(chan error, 1)
		go func() { werr <- f.writeTo(stdin, stop) }()
		var feedErr error
		select {
		case feedErr = <-werr:
		case <-p.exited:
			close(stop)
			feedErr = <-werr
		}
		var srcErr *sourceError
		if errors.As(feedErr, &srcErr) {
			// stdin stays open until restic is gone: an EOF now would end the file early.
			p.interrupt()
			_ = p.wait()
			return srcErr
		}
		if err := p.wait(); err != nil {
			return err
		}
		if feedErr != nil {
			return fmt.Errorf("restic backup: feeding stdin: %w", feedErr)
		}
		sum, err = parseSummary(out.Bytes())
		return err
	}, f.replayable)
	if err != nil {
		return 0, "", err
	}
	if sum.TotalBytesProcessed != f.n {
		return 0, "", fmt.Errorf("restic backup read %d bytes, %d were sent; snapshot %s is not used", sum.TotalBytesProcessed, f.n, sum.SnapshotID)
	}
	return f.n, sum.SnapshotID, nil
}

func (s *Sink) backupArgs(id core.SnapshotID, filename string, extraTags []string) []string {
	args := []string{"backup", "--stdin", "--stdin-filename", filename, "--host", s.host,
		// Every restic snapshot of one nightjar snapshot gets its start time (the child runs
		// with TZ=UTC), so restic's own time-based policies see one time per run.
		"--time", id.Time().UTC().Format("2006-01-02 15:04:05"), "--json", "--quiet"}
	for _, t := range append(s.tags(id), extraTags...) {
		args = append(args, "--tag", t)
	}
	return args
}

// early is the manifest's `restic backup`, started with a snapshot's first Put: it opens
// the repository (key derivation, index) while the artifacts upload, then waits on its
// stdin for the manifest. That hides most of the cost of the extra restic run. If the run
// fails it is interrupted before its stdin ends, so it stores nothing.
type early struct {
	p     *proc
	stdin *os.File
	out   *limitedBuffer
}

// startEarly starts the manifest's restic for id unless one is running; best effort.
func (s *Sink) startEarly(ctx context.Context, id core.SnapshotID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.early[id] != nil {
		return
	}
	out := &limitedBuffer{max: 1 << 20}
	p, stdin, _, err := s.run.start(ctx, s.backupArgs(id, s.filename(core.ManifestName), []string{tagManifest}), true, out)
	if err != nil {
		s.log.Debug("cannot start the manifest's restic ahead; it starts at commit", "err", err)
		return
	}
	s.early[id] = &early{p: p, stdin: stdin, out: out}
}

// takeEarly removes and returns id's early manifest process, if any.
func (s *Sink) takeEarly(id core.SnapshotID) *early {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.early[id]
	delete(s.early, id)
	return e
}

// stop interrupts an early process that will not be used; its stdin never ends.
func (e *early) stop() {
	e.p.interrupt()
	_ = e.p.wait()
	e.stdin.Close()
}

// finish hands the manifest to the early process and returns its restic snapshot id.
func (e *early) finish(b []byte) (string, error) {
	_, werr := e.stdin.Write(b)
	if werr != nil {
		e.stop()
		return "", werr
	}
	if err := e.stdin.Close(); err != nil {
		e.stop()
		return "", err
	}
	if err := e.p.wait(); err != nil {
		return "", err
	}
	sum, err := parseSummary(e.out.Bytes())
	if err != nil {
		return "", err
	}
	if sum.TotalBytesProcessed != int64(len(b)) {
		return "", fmt.Errorf("restic backup read %d bytes of the %d-byte manifest", sum.TotalBytesProcessed, len(b))
	}
	return sum.SnapshotID, nil
}

// Close stops manifest processes of snapshots that were never committed.
func (s *Sink) Close() error {
	s.mu.Lock()
	es := s.early
	s.early = map[core.SnapshotID]*early{}
	s.mu.Unlock()
	for _, e := range es {
		e.stop()
	}
	return nil
}

func parseSummary(out []byte) (summary, error) {
	var found summary
	for _, line := range bytes.Split(out, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("{")) {
			continue
		}
		var m summary
		if json.Unmarshal(line, &m) == nil && m.MessageType == "summary" {
			found = m
		}
	}
	if found.SnapshotID == "" {
		return found, fmt.Errorf("restic backup printed no summary with a snapshot id (output: %.200q)", out)
	}
	return found, nil
}

// Commit stores the manifest as the last restic snapshot of the nightjar snapshot, after
// checking that every artifact it names was stored by this sink.
func (s *Sink) Commit(ctx context.Context, m *core.Manifest) error {
	if err := s.checkRefs(ctx, m); err != nil {
		if e := s.takeEarly(m.ID); e != nil {
			e.stop()
		}
		return s.errorf("commit %s: %w", m.ID, err)
	}
	b, err := m.Encode()
	if err != nil {
		return s.errorf("commit %s: %w", m.ID, err)
	}
	var ref string
	if e := s.takeEarly(m.ID); e != nil {
		if ref, err = e.finish(b); err != nil {
			// It may have met a lock or died: store the manifest the ordinary way, with
			// lock retries. (Should the failed one have stored a snapshot after all, the
			// newest manifest of a snapshot is used, and Delete forgets every one.)
			s.log.Debug("the manifest's early restic failed; running it again", "err", err)
		}
	}
	if ref == "" {
		if _, ref, err = s.backup(ctx, m.ID, s.filename(core.ManifestName), []string{tagManifest}, bytes.NewReader(b)); err != nil {
			return s.errorf("commit %s: store the manifest: %w", m.ID, err)
		}
	}
	s.mu.Lock()
	delete(s.stored, m.ID)
	s.mu.Unlock()
	s.log.Debug("manifest stored as a restic snapshot", "restic_snapshot", ref)
	return nil
}

// checkRefs refuses a manifest that names an artifact this sink did not store. Artifacts
// stored by this process are known; others are looked up in the repository.
func (s *Sink) checkRefs(ctx context.Context, m *core.Manifest) error {
	s.mu.Lock()
	known := s.stored[m.ID]
	s.mu.Unlock()
	var g *group
	for _, a := range m.Artifacts {
		if a.Ref == "" {
			return fmt.Errorf("artifact %s has no restic snapshot id; refusing to write a manifest that names it", a.Object)
		}
		if known != nil && known[a.Object] == a.Ref {
			continue
		}
		if g == nil {
			gs, err := s.groups(ctx, m.ID)
			if err != nil {
				return err
			}
			if g = gs[m.ID]; g == nil {
				g = &group{}
			}
			if g.manifest != nil {
				return fmt.Errorf("a manifest already exists (restic snapshot %s)", g.manifest.ShortID)
			}
		}
		sn := g.objects[a.Object]
		if sn == nil || !strings.HasPrefix(sn.ID, a.Ref) {
			return fmt.Errorf("artifact %s: restic snapshot %s is missing; refusing to write a manifest that names it", a.Object, a.Ref)
		}
	}
	return nil
}

// resticSnapshot is one entry of `restic snapshots --json`.
type resticSnapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Paths    []string  `json:"paths"`
	Hostname string    `json:"hostname"`
	Tags     []string  `json:"tags"`
}

// group is the restic snapshots of one nightjar snapshot.
type group struct {
	id        core.SnapshotID
	manifest  *resticSnapshot
	manifests []*resticSnapshot          // every manifest snapshot (normally one)
	objects   map[string]*resticSnapshot // artifact object name → its restic snapshot
	others    []*resticSnapshot          // tagged with the id, but not a path this sink writes
}

func (g *group) all() []*resticSnapshot {
	out := append([]*resticSnapshot{}, g.manifests...)
	for _, sn := range g.objects {
		out = append(out, sn)
	}
	return append(out, g.others...)
}

// groups lists this pipeline's restic snapshots (only those of id, when given), grouped by
// nightjar snapshot.
func (s *Sink) groups(ctx context.Context, id core.SnapshotID) (map[core.SnapshotID]*group, error) {
	filter := tagNightjar + "," + tagPipelinePrefix + s.pipeline
	if id != "" {
		filter += "," + tagSnapshotPrefix + string(id)
	}
	var out []byte
	err := s.run.retryLocked(ctx, func() (err error) {
		out, err = s.run.output(ctx, 512<<20, "snapshots", "--json", "--tag", filter)
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	var sns []*resticSnapshot
	if err := json.Unmarshal(out, &sns); err != nil {
		return nil, fmt.Errorf("restic snapshots: cannot read its JSON output: %w", err)
	}
	manifestPath := "/" + s.filename(core.ManifestName)
	prefix := "/" + s.pipeline + "/"
	gs := map[core.SnapshotID]*group{}
	for _, sn := range sns {
		var sid core.SnapshotID
		isManifest := false
		for _, t := range sn.Tags {
			if v, ok := strings.CutPrefix(t, tagSnapshotPrefix); ok {
				if parsed, err := core.ParseSnapshotID(v); err == nil {
					sid = parsed
				}
			}
			isManifest = isManifest || t == tagManifest
		}
		if sid == "" {
			continue // tagged by hand, not by this sink
		}
		g := gs[sid]
		if g == nil {
			g = &group{id: sid, objects: map[string]*resticSnapshot{}}
			gs[sid] = g
		}
		switch {
		case isManifest && len(sn.Paths) == 1 && sn.Paths[0] == manifestPath:
			g.manifests = append(g.manifests, sn)
			if g.manifest == nil || sn.Time.After(g.manifest.Time) {
				g.manifest = sn
			}
		case !isManifest && len(sn.Paths) == 1 && strings.HasPrefix(sn.Paths[0], prefix) &&
			checkObject(strings.TrimPrefix(sn.Paths[0], prefix)) == nil:
			obj := strings.TrimPrefix(sn.Paths[0], prefix)
			if prev := g.objects[obj]; prev != nil {
				g.others = append(g.others, prev) // a duplicate (a replayed Put): keep the newest
			}
			g.objects[obj] = sn
		default:
			g.others = append(g.others, sn)
		}
	}
	return gs, nil
}

// List returns the complete nightjar snapshots (those whose manifest is stored), newest
// first. Manifests are read with `restic dump` and kept in <state_dir>/restic-manifests by
// restic snapshot id (restic snapshots never change), so a later listing is one restic call.
func (s *Sink) List(ctx context.Context) ([]*core.Manifest, error) {
	if err := s.prepare(ctx); err != nil {
		return nil, s.errorf("list: %w", err)
	}
	gs, err := s.groups(ctx, "")
	if err != nil {
		return nil, s.errorf("list: %w", err)
	}
	var complete []*group
	for _, g := range gs {
		if g.manifest != nil {
			complete = append(complete, g)
		}
	}
	ms := make([]*core.Manifest, len(complete))
	errs := make([]error, len(complete))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, g := range complete {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ms[i], errs[i] = s.readManifest(ctx, g)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, s.errorf("list: %w", err)
	}
	s.mu.Lock()
	s.objects = map[core.SnapshotID]map[string]string{}
	for _, g := range complete {
		objs := map[string]string{}
		for name, sn := range g.objects {
			objs[name] = sn.ID
		}
		s.objects[g.id] = objs
	}
	s.mu.Unlock()
	core.SortNewestFirst(ms)
	return ms, nil
}

var resticID = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Sink) cachePath(rid string) string {
	if s.cacheDir == "" || !resticID.MatchString(rid) {
		return ""
	}
	return filepath.Join(s.cacheDir, rid+".json")
}

func (s *Sink) readManifest(ctx context.Context, g *group) (*core.Manifest, error) {
	rid := g.manifest.ID
	check := func(b []byte) (*core.Manifest, error) {
		m, err := core.DecodeManifest(b)
		if err != nil {
			return nil, err
		}
		if m.ID != g.id {
			return nil, fmt.Errorf("manifest names snapshot %s, its restic snapshot is tagged %s", m.ID, g.id)
		}
		return m, nil
	}
	cache := s.cachePath(rid)
	if cache != "" {
		if b, err := os.ReadFile(cache); err == nil {
			if m, err := check(b); err == nil {
				return m, nil
			}
		}
	}
	var out []byte
	err := s.run.retryLocked(ctx, func() (err error) {
		out, err = s.run.output(ctx, 16<<20, "dump", rid, "/"+s.filename(core.ManifestName))
		return err
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read its manifest (restic snapshot %s): %w", g.id, g.manifest.ShortID, err)
	}
	m, err := check(out)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s (restic snapshot %s): %w", g.id, g.manifest.ShortID, err)
	}
	if cache != "" {
		if err := writeFileAtomic(cache, out); err != nil {
			s.log.Debug("cannot cache a manifest", "file", cache, "err", err)
		}
	}
	return m, nil
}

func writeFileAtomic(name string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// resolve finds the restic snapshot that holds object of nightjar snapshot id.
func (s *Sink) resolve(ctx context.Context, id core.SnapshotID, object string) (string, error) {
	s.mu.Lock()
	rid := s.objects[id][object]
	s.mu.Unlock()
	if rid != "" {
		return rid, nil
	}
	gs, err := s.groups(ctx, id)
	if err != nil {
		return "", err
	}
	g := gs[id]
	if g == nil {
		return "", fmt.Errorf("no restic snapshot is tagged %s%s", tagSnapshotPrefix, id)
	}
	if object == core.ManifestName && g.manifest != nil {
		return g.manifest.ID, nil
	}
	if sn := g.objects[object]; sn != nil {
		return sn.ID, nil
	}
	return "", fmt.Errorf("snapshot %s has no restic snapshot of %s", id, "/"+s.filename(object))
}

// Open streams an object with `restic dump <restic id> /<pipeline>/<object>`. Reading to
// EOF also checks restic's exit status.
func (s *Sink) Open(ctx context.Context, id core.SnapshotID, object string) (io.ReadCloser, error) {
	rid, err := s.resolve(ctx, id, object)
	if err != nil {
		return nil, s.errorf("open %s/%s: %w", id, object, err)
	}
	var rc io.ReadCloser
	err = s.run.retryLocked(ctx, func() error {
		p, _, out, err := s.run.start(ctx, []string{"dump", rid, "/" + s.filename(object)}, false, nil)
		if err != nil {
			return err
		}
		// Wait for the first byte (or the end), so a lock held by a prune is retried here.
		br := bufio.NewReaderSize(out, 256<<10)
		if _, perr := br.Peek(1); perr != nil {
			out.Close()
			if werr := p.wait(); werr != nil {
				return werr
			}
			if perr != io.EOF {
				return perr
			}
		}
		rc = &dumpReader{p: p, r: br, f: out}
		return nil
	}, nil)
	if err != nil {
		return nil, s.errorf("open %s/%s: %w", id, object, err)
	}
	return rc, nil
}

// dumpReader is restic dump's stdout. At EOF it reports restic's exit status, so a dump
// that failed halfway is an error, not a short file.
type dumpReader struct {
	p    *proc
	r    *bufio.Reader
	f    *os.File
	done bool
	err  error
}

func (d *dumpReader) Read(b []byte) (int, error) {
	if d.done {
		return 0, d.err
	}
	n, err := d.r.Read(b)
	switch {
	case err == io.EOF:
		d.done, d.err = true, io.EOF
		if werr := d.p.wait(); werr != nil {
			d.err = werr
			return n, werr
		}
	case err != nil:
		d.done, d.err = true, err
	}
	return n, err
}

// Close stops restic if the stream was not read to the end.
func (d *dumpReader) Close() error {
	if !d.done {
		d.p.interrupt()
	}
	err := d.f.Close()
	_ = d.p.wait()
	return err
}

// Delete forgets every restic snapshot of a nightjar snapshot, the manifest's first (so it
// stops being complete), then runs `restic prune` unless prune: never.
func (s *Sink) Delete(ctx context.Context, id core.SnapshotID) error {
	gs, err := s.groups(ctx, id)
	if err != nil {
		return s.errorf("delete %s: %w", id, err)
	}
	g := gs[id]
	if g == nil {
		return nil
	}
	if err := s.forget(ctx, g); err != nil {
		return s.errorf("delete %s: %w", id, err)
	}
	if !s.prune {
		return nil
	}
	s.log.Info("pruning the restic repository (prune: always)", "deleted", id)
	if err := s.run.retryLocked(ctx, func() error { return s.run.run(ctx, nil, "prune", "--quiet") }, nil); err != nil {
		return s.errorf("delete %s: its restic snapshots are forgotten, but prune failed (run `restic prune` later): %w", id, err)
	}
	return nil
}

// forget removes a group's restic snapshots: the manifests first, then the rest.
func (s *Sink) forget(ctx context.Context, g *group) error {
	var first, rest []string
	for _, sn := range g.manifests {
		first = append(first, sn.ID)
	}
	for _, sn := range g.all()[len(g.manifests):] {
		rest = append(rest, sn.ID)
	}
	for _, ids := range [][]string{first, rest} {
		if len(ids) == 0 {
			continue
		}
		args := append([]string{"forget", "--quiet"}, ids...)
		if err := s.run.retryLocked(ctx, func() error { return s.run.run(ctx, nil, args...) }, nil); err != nil {
			return err
		}
	}
	for _, sn := range g.manifests {
		if p := s.cachePath(sn.ID); p != "" {
			os.Remove(p)
		}
	}
	s.mu.Lock()
	delete(s.objects, g.id)
	s.mu.Unlock()
	return nil
}

// Leftovers implements core.LeftoverSink: nightjar snapshots with restic snapshots but no
// manifest (a failed or a running run).
func (s *Sink) Leftovers(ctx context.Context) ([]core.Leftover, error) {
	gs, err := s.groups(ctx, "")
	if err != nil {
		return nil, s.errorf("list leftovers: %w", err)
	}
	var out []core.Leftover
	for id, g := range gs {
		if g.manifest == nil {
			out = append(out, core.Leftover{ID: id, Objects: len(g.all())})
		}
	}
	return out, nil
}

// DeleteLeftover forgets the restic snapshots of an incomplete nightjar snapshot. It does
// not prune (the data goes with the next prune): it runs after a failed run, when waiting
// for a prune of the whole repository is not wanted.
func (s *Sink) DeleteLeftover(ctx context.Context, id core.SnapshotID) error {
	if e := s.takeEarly(id); e != nil {
		e.stop()
	}
	gs, err := s.groups(ctx, id)
	if err != nil {
		return s.errorf("delete leftover %s: %w", id, err)
	}
	if g := gs[id]; g != nil {
		if err := s.forget(ctx, g); err != nil {
			return s.errorf("delete leftover %s: %w", id, err)
		}
	}
	s.mu.Lock()
	delete(s.stored, id)
	s.mu.Unlock()
	return nil
}
