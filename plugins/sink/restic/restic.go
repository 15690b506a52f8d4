// Package restic is the restic sink: every artifact of a nightjar snapshot becomes one real
// restic snapshot (`restic backup --stdin`), and the manifest is stored last the same way,
// so restic users keep their repository, their tools (`restic snapshots`, `restic dump`,
// `restic check`) and their habits. restic's code cannot be imported (it is all internal),
// so the sink drives the restic binary. See docs/RESTIC.md for the mapping.
package restic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nightjar-backup/nightjar/core"
)

// Register adds the restic sink to r.
func Register(r *core.Registry) {
	r.AddSink(core.SinkPlugin{
		Type: "restic",
		Doc: "Stores each artifact as a restic snapshot of /<pipeline>/<artifact file> (tags nightjar, " +
			"nightjar-pipeline=<pipeline>, nightjar-snapshot=<id>) and the manifest last as /<pipeline>/manifest.json " +
			"(tag nightjar-manifest), by running the restic binary (0.14 or newer). Receives raw bytes: restic " +
			"compresses, encrypts and deduplicates itself. See docs/RESTIC.md.",
		Fields: []core.Field{
			{Name: "repository", Kind: core.KindString, Doc: "The restic repository (RESTIC_REPOSITORY); give this or repository_file. A relative local path is relative to the config file.", Example: "s3:https://nyc3.digitaloceanspaces.com/substrate-restic"},
			{Name: "repository_file", Kind: core.KindPath, Doc: "A file holding the repository location (RESTIC_REPOSITORY_FILE)."},
			{Name: "password", Kind: core.KindString, Secret: true, Doc: "The repository password, given to restic in its environment only (RESTIC_PASSWORD). Prefer password_file."},
			{Name: "password_file", Kind: core.KindPath, Doc: "A file holding the repository password; restic reads it itself (RESTIC_PASSWORD_FILE), exactly as `restic -p FILE` does.", Example: "/etc/nightjar/restic-password"},
			{Name: "env", Kind: core.KindStringMap, Secret: true, Doc: "Extra environment for restic, e.g. backend credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, B2_ACCOUNT_KEY). restic gets no other variable of nightjar's environment but PATH, HOME and TMPDIR.", Example: "{AWS_ACCESS_KEY_ID: ${SPACES_KEY}, AWS_SECRET_ACCESS_KEY: ${SPACES_SECRET}}"},
			{Name: "binary", Kind: core.KindString, Default: "restic", Doc: "The restic executable: a name looked up in PATH, or a path."},
			{Name: "prune", Kind: core.KindString, Default: "always", Enum: []string{"always", "never"}, Doc: "Run `restic prune` after a snapshot is deleted (always), or leave pruning to your own schedule (never)."},
			{Name: "init", Kind: core.KindBool, Default: false, Doc: "Create the repository (`restic init`) when it does not exist yet."},
			{Name: "raw", Kind: core.KindBool, Default: true, Doc: "Receive the artifacts before the pipeline's transforms. Leave it true: compressed or encrypted input defeats restic's deduplication."},
			{Name: "lock_timeout", Kind: core.KindDuration, Default: 10 * time.Minute, Doc: "How long to wait when another restic process (a prune, a check) holds the repository's lock."},
			{Name: "cache_dir", Kind: core.KindPath, Doc: "restic's cache folder (RESTIC_CACHE_DIR); default <state_dir>/restic-cache."},
		},
		New: func(ctx context.Context, c *core.Component, env core.Env) (core.Sink, error) {
			cfg, err := configFrom(c)
			if err != nil {
				return nil, err
			}
			return New(ctx, cfg, env)
		},
	})
}

// Config is a restic sink's configuration.
type Config struct {
	Name           string // the sink's configured name, for messages
	Repository     string
	RepositoryFile string
	Password       string
	PasswordFile   string
	Env            map[string]string
	Binary         string
	Prune          bool
	Init           bool
	Raw            bool
	LockTimeout    time.Duration
	CacheDir       string
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reserved environment variables are set from their own keys, never from env.
var reserved = map[string]string{
	"RESTIC_REPOSITORY": "repository", "RESTIC_REPOSITORY_FILE": "repository_file",
	"RESTIC_PASSWORD": "password", "RESTIC_PASSWORD_FILE": "password_file",
	"RESTIC_PASSWORD_COMMAND": "password_file", "RESTIC_CACHE_DIR": "cache_dir",
}

func configFrom(c *core.Component) (Config, error) {
	cfg := Config{
		Name: c.Name, Repository: c.String("repository"), RepositoryFile: c.String("repository_file"),
		Password: c.String("password"), Env: c.StringMap("env"), Binary: c.String("binary"),
		Prune: c.String("prune") != "never", Init: c.Bool("init"), Raw: c.Bool("raw"),
		LockTimeout: c.Duration("lock_timeout"), CacheDir: c.String("cache_dir"),
	}
	cfg.Repository = resolveRepository(cfg.Repository, c.File)
	if c.Has("password_file") {
		// The core config layer also read the file into password; restic reads it itself.
		cfg.PasswordFile, cfg.Password = c.String("password_file"), ""
	}
	switch {
	case cfg.Repository == "" && cfg.RepositoryFile == "":
		return cfg, c.Errorf("repository", "required key \"repository\" is missing (or repository_file), e.g. s3:https://nyc3.digitaloceanspaces.com/substrate-restic or /srv/restic")
	case cfg.Repository != "" && cfg.RepositoryFile != "":
		return cfg, c.Errorf("repository", "give either repository or repository_file, not both")
	case cfg.Password == "" && cfg.PasswordFile == "":
		return cfg, c.Errorf("password", "required key \"password_file\" is missing (or password), e.g. /etc/nightjar/restic-password")
	}
	for _, k := range sortedKeys(cfg.Env) {
		if !envName.MatchString(k) {
			return cfg, c.Errorf("env", "invalid environment variable name %q", k)
		}
		if key, ok := reserved[k]; ok {
			return cfg, c.Errorf("env", "%s is set from this sink's %q key; remove it from env", k, key)
		}
	}
	return cfg, nil
}

var backendPrefix = regexp.MustCompile(`^(b2|s3|gs|azure|swift|sftp|rest|rclone):`)

// resolveRepository makes a relative local repository path relative to the config file's
// folder, as every other path in a config is (restic would take it relative to the
// working directory).
func resolveRepository(repo, configFile string) string {
	if repo == "" || configFile == "" || backendPrefix.MatchString(repo) {
		return repo
	}
	path, hasLocal := strings.CutPrefix(repo, "local:")
	if path == "" || filepath.IsAbs(path) {
		return repo
	}
	dir, err := filepath.Abs(filepath.Dir(configFile))
	if err != nil {
		return repo
	}
	path = filepath.Join(dir, path)
	if hasLocal {
		return "local:" + path
	}
	return path
}

// Sink is the restic sink. It implements core.Sink, core.RawSink and core.LeftoverSink.
type Sink struct {
	name     string
	pipeline string
	host     string
	prune    bool
	init     bool
	raw      bool
	run      *runner
	version  version
	cacheDir string // manifests read from restic, by restic snapshot id; "" for none
	log      *slog.Logger

	mu      sync.Mutex
	ready   bool                                  // the repository was found (or created)
	stored  map[core.SnapshotID]map[string]string // refs of this process's Puts: id → object → restic id
	objects map[core.SnapshotID]map[string]string // from the last listing: id → object → restic id
	early   map[core.SnapshotID]*early            // manifest processes started ahead
}

// New checks the restic binary and its version and returns the sink. It does not touch the
// repository: that happens on first use.
func New(ctx context.Context, cfg Config, env core.Env) (*Sink, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Binary == "" {
		cfg.Binary = "restic"
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 10 * time.Minute
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("restic binary %q not found: install restic %s or newer, or set `binary` to its path: %w", cfg.Binary, minVersion, err)
	}
	cacheDir := cfg.CacheDir
	if cacheDir == "" && env.StateDir != "" {
		cacheDir = filepath.Join(env.StateDir, "restic-cache")
	}
	r := &runner{bin: bin, lockTimeout: cfg.LockTimeout, killGrace: 10 * time.Second, log: log}
	r.env, r.secrets = childEnv(cfg, cacheDir)
	s := &Sink{
		name: cfg.Name, pipeline: env.Pipeline, host: env.Host, prune: cfg.Prune, init: cfg.Init, raw: cfg.Raw,
		run: r, log: log, stored: map[core.SnapshotID]map[string]string{}, objects: map[core.SnapshotID]map[string]string{},
		early: map[core.SnapshotID]*early{},
	}
	if env.StateDir != "" {
		s.cacheDir = filepath.Join(env.StateDir, "restic-manifests")
	}
	if s.pipeline == "" {
		return nil, errors.New("restic sink: no pipeline name")
	}
	if s.host == "" {
		s.host = "unknown"
	}
	if s.version, err = detectVersion(ctx, r, env.StateDir); err != nil {
		return nil, fmt.Errorf("restic sink: %w", err)
	}
	if !s.version.atLeast(minVersion.major, minVersion.minor) {
		return nil, fmt.Errorf("restic sink: %s is restic %s; nightjar needs %s or newer", bin, s.version, minVersion)
	}
	r.feat = featuresOf(s.version)
	if !cfg.Raw {
		log.Warn("restic sink with raw: false receives compressed/encrypted artifacts: restic's deduplication is lost and every run stores everything again")
	}
	log.Debug("restic sink ready", "restic", s.version.String(), "binary", bin)
	return s, nil
}

// childEnv is restic's whole environment: PATH, HOME, TMPDIR, TZ=UTC (for --time), the
// repository and password variables, the cache folder, and the configured env. It returns
// the secrets to scrub from restic's messages.
func childEnv(cfg Config, cacheDir string) (env, secrets []string) {
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "TZ=UTC")
	if cfg.Repository != "" {
		env = append(env, "RESTIC_REPOSITORY="+cfg.Repository)
		if pw := urlPassword(cfg.Repository); pw != "" {
			secrets = append(secrets, pw)
		}
	} else {
		env = append(env, "RESTIC_REPOSITORY_FILE="+cfg.RepositoryFile)
	}
	if cfg.PasswordFile != "" {
		env = append(env, "RESTIC_PASSWORD_FILE="+cfg.PasswordFile)
	} else {
		env = append(env, "RESTIC_PASSWORD="+cfg.Password)
		secrets = append(secrets, cfg.Password)
	}
	if cacheDir != "" {
		env = append(env, "RESTIC_CACHE_DIR="+cacheDir)
	}
	for _, k := range sortedKeys(cfg.Env) {
		env = append(env, k+"="+cfg.Env[k])
		secrets = append(secrets, cfg.Env[k])
	}
	// Longest first, so a secret that contains another is scrubbed whole. Very short values
	// (a region, a flag) would scrub ordinary words from messages and are left alone.
	var keep []string
	for _, s := range secrets {
		if len(s) >= 4 {
			keep = append(keep, s)
		}
	}
	sort.Slice(keep, func(i, j int) bool { return len(keep[i]) > len(keep[j]) })
	return env, keep
}

// urlPassword finds a password in a repository URL such as rest:https://user:pw@host/.
func urlPassword(repo string) string {
	i := strings.Index(repo, "://")
	if i < 0 {
		return ""
	}
	rest := repo[i+3:]
	at := strings.LastIndex(rest, "@")
	if slash := strings.Index(rest, "/"); at < 0 || slash >= 0 && slash < at {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok {
		return ""
	}
	return pw
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WantsRaw implements core.RawSink: the `raw` key (default true).
func (s *Sink) WantsRaw() bool { return s.raw }

// Version is the restic release the sink drives.
func (s *Sink) Version() string { return s.version.String() }

func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("sink %q: "+format, append([]any{s.name}, args...)...)
}

// prepare makes sure the repository exists once per process: with init: true it is
// created when missing; otherwise a missing repository shows up as the first command's
// error, with a hint.
func (s *Sink) prepare(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready || !s.init {
		return nil
	}
	err := s.run.retryLocked(ctx, func() error { return s.run.run(ctx, nil, "cat", "config") }, nil)
	if isKind(err, errNoRepository) {
		s.log.Info("creating the restic repository (init: true)")
		if err = s.run.run(ctx, nil, "init"); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	if err != nil {
		return err
	}
	s.ready = true
	return nil
}
