package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Pinger sends healthchecks-style pings: <url>/start when a run starts, <url> when it
// succeeds, <url>/fail when it fails. A ping that fails is logged and never fails a run.
// The URL holds the check's secret, so it never appears in a log line or an error.
type Pinger struct {
	url     string
	timeout time.Duration
	client  *http.Client
	log     *slog.Logger
}

// maxBody caps a ping's body; healthchecks keeps the first 100 kB of it.
const maxBody = 10_000

// NewPinger returns a pinger for base, or nil when base is empty (a nil Pinger does nothing).
func NewPinger(base string, timeout time.Duration, log *slog.Logger) *Pinger {
	if base == "" {
		return nil
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pinger{url: strings.TrimRight(base, "/"), timeout: timeout, client: &http.Client{Timeout: timeout}, log: log}
}

// Start pings <url>/start.
func (p *Pinger) Start(ctx context.Context) { p.ping(ctx, "start", "/start", "") }

// Success pings <url> with body as the check's log.
func (p *Pinger) Success(ctx context.Context, body string) { p.ping(ctx, "success", "", body) }

// Fail pings <url>/fail with body as the check's log.
func (p *Pinger) Fail(ctx context.Context, body string) { p.ping(ctx, "fail", "/fail", body) }

func (p *Pinger) ping(ctx context.Context, kind, suffix, body string) {
	if p == nil {
		return
	}
	// A run being cancelled (SIGTERM) is exactly when the fail ping matters: do not let the
	// run's context cancel it, only the ping's own time limit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	if len(body) > maxBody {
		body = body[:maxBody]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+suffix, strings.NewReader(body))
	if err != nil {
		p.log.Warn("healthchecks ping not sent: invalid notify.healthchecks_url", "ping", kind)
		return
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "nightjar")
	resp, err := p.client.Do(req)
	if err != nil {
		p.log.Warn("healthchecks ping failed", "ping", kind, "err", redactURL(err))
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		p.log.Warn("healthchecks ping refused", "ping", kind, "status", resp.Status)
		return
	}
	p.log.Debug("healthchecks ping sent", "ping", kind)
}

// redactURL drops the URL (which holds the check's secret) from an HTTP client error.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
