// Package sqlitetest helps tests use real SQLite databases with a writer committing in
// another process. The writer is the test binary itself, re-executed: a test package calls
// RunWriterIfRequested from its TestMain.
//
// The "bank" database has two account tables and a transfer log. Every writer transaction
// moves an amount from a row of accounts_a to a row of accounts_b and logs it, so in any
// committed state sum(a)+sum(b) is constant and sum(b)-initial(b) equals the logged total.
// A copy that is torn between transactions breaks one of these.
package sqlitetest

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/nightjar-backup/nightjar/core/testenv"
)

const (
	envWriter  = "NIGHTJAR_SQLITETEST_WRITER"
	accounts   = 100
	initialBal = 1_000_000
	// Total is sum(accounts_a)+sum(accounts_b) in every committed state.
	Total = 2 * accounts * initialBal
)

// Open opens path read-write with a busy timeout.
func Open(path string, busy time.Duration) (*sql.DB, error) {
	q := url.Values{"_pragma": {fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds())}}
	db, err := sql.Open("sqlite", uri(path, q))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// uri makes a SQLite URI filename: characters such as '?' and '#' in path are escaped.
func uri(path string, q url.Values) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
}

// CreateBank makes the bank database at path in journal mode jm ("wal" or "delete") with
// about padMB MiB of filler rows, so copies take measurable time.
func CreateBank(t testing.TB, path, jm string, padMB int) {
	t.Helper()
	if err := createBank(path, jm, padMB); err != nil {
		t.Fatalf("create bank %s: %v", path, err)
	}
}

func createBank(path, jm string, padMB int) error {
	db, err := Open(path, 5*time.Second)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{
		"PRAGMA journal_mode=" + jm,
		"CREATE TABLE accounts_a (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
		"CREATE TABLE accounts_b (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
		"CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, note BLOB)",
		"CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)",
		"CREATE INDEX transfers_dst ON transfers(dst)",
		"PRAGMA user_version=7",
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for i := 1; i <= accounts; i++ {
		for _, tbl := range []string{"accounts_a", "accounts_b"} {
			if _, err := tx.Exec("INSERT INTO "+tbl+" (id, balance) VALUES (?, ?)", i, initialBal); err != nil {
				tx.Rollback()
				return err
			}
		}
	}
	for i := 0; i < padMB*16; i++ { // 64 KiB rows
		if _, err := tx.Exec("INSERT INTO filler (data) VALUES (randomblob(65536))"); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// Damaged writes to dst a copy of the database file src (4 KiB pages) whose b-tree pages
// after the schema are garbage, and returns the bytes written: its header is intact, and
// SQLite's quick_check and integrity_check find the damage.
func Damaged(t testing.TB, src, dst string) []byte {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i < 6*4096 && i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// CheckInvariant fails t when the bank database at path is torn.
func CheckInvariant(t testing.TB, path string) (transfers int64) {
	t.Helper()
	n, err := Invariant(path)
	if err != nil {
		t.Fatalf("bank %s: %v", path, err)
	}
	return n
}

// Invariant checks the bank's cross-table invariants and returns the number of transfers.
func Invariant(path string) (int64, error) {
	db, err := sql.Open("sqlite", uri(path, url.Values{"mode": {"ro"}, "immutable": {"1"}}))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var a, b, logged, n int64
	err = db.QueryRow(`SELECT (SELECT sum(balance) FROM accounts_a), (SELECT sum(balance) FROM accounts_b),
		(SELECT coalesce(sum(amount),0) FROM transfers), (SELECT count(*) FROM transfers)`).Scan(&a, &b, &logged, &n)
	if err != nil {
		return 0, err
	}
	if a+b != Total {
		return n, fmt.Errorf("torn copy: sum(a)+sum(b) = %d, want %d", a+b, Total)
	}
	if b-accounts*initialBal != logged {
		return n, fmt.Errorf("torn copy: accounts_b grew by %d but transfers log %d", b-accounts*initialBal, logged)
	}
	return n, nil
}

// Writer is a process committing transfers to a bank database.
type Writer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *strings.Builder
	done   chan error
}

// StartWriter re-executes the test binary as a writer on path and waits until it has
// committed its first transaction. The test package's TestMain must call
// RunWriterIfRequested. The writer is stopped when the test ends if Stop was not called.
func StartWriter(t testing.TB, path string) *Writer {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = testenv.Env(t, envWriter+"="+path)
	w := &Writer{cmd: cmd, stderr: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stderr = w.stderr
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start writer: %v", err)
	}
	line, err := w.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer did not start: %q %v; stderr: %s", line, err, w.stderr)
	}
	t.Cleanup(func() { w.stop() })
	return w
}

// Stop tells the writer to finish and returns how many transactions it committed, or the
// first error it met. It first lets the writer run on briefly, so that a copy taken while
// the writer ran holds fewer transactions than it committed (proof of a copy under load).
func (w *Writer) Stop() (commits int64, err error) {
	time.Sleep(200 * time.Millisecond)
	return w.stop()
}

func (w *Writer) stop() (int64, error) {
	if w.cmd.ProcessState != nil {
		return 0, errors.New("writer already stopped")
	}
	w.stdin.Close()
	rest, _ := io.ReadAll(w.stdout)
	err := w.cmd.Wait()
	if err != nil {
		return 0, fmt.Errorf("writer failed: %v; stderr: %s", err, w.stderr)
	}
	n, perr := strconv.ParseInt(strings.TrimSpace(string(rest)), 10, 64)
	if perr != nil {
		return 0, fmt.Errorf("writer output %q: %v", rest, perr)
	}
	return n, nil
}

// RunWriterIfRequested runs the writer and exits when this process was started by
// StartWriter; otherwise it returns at once. Call it first in TestMain.
func RunWriterIfRequested() {
	path := os.Getenv(envWriter)
	if path == "" {
		return
	}
	n, err := runWriter(path, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "writer: after %d commits: %v\n", n, err)
		os.Exit(1)
	}
	fmt.Println(n)
	os.Exit(0)
}

// runWriter commits transfers until stdin closes. Its busy timeout is long: in rollback
// journal mode a reader holding a shared lock makes a commit wait, which must not fail.
func runWriter(path string, stdin io.Reader, stdout io.Writer) (int64, error) {
	db, err := Open(path, 60*time.Second)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	note := make([]byte, 512)
	var n int64
	for ctx.Err() == nil {
		if err := transfer(db, rng, note); err != nil {
			return n, err
		}
		n++
		if n == 1 {
			fmt.Fprintln(stdout, "ready")
		}
	}
	return n, nil
}

// Transfers commits n transfers on db, one transaction each.
func Transfers(db *sql.DB, n int) error {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	note := make([]byte, 512)
	for i := 0; i < n; i++ {
		if err := transfer(db, rng, note); err != nil {
			return err
		}
	}
	return nil
}

func transfer(db *sql.DB, rng *rand.Rand, note []byte) error {
	src, dst, amount := rng.IntN(accounts)+1, rng.IntN(accounts)+1, rng.IntN(100)+1
	for i := range note {
		note[i] = byte(rng.Uint32())
	}
	// A Conn so BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock).
	conn, err := db.Conn(context.Background())
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for _, s := range []struct {
		q    string
		args []any
	}{
		{"UPDATE accounts_a SET balance = balance - ? WHERE id = ?", []any{amount, src}},
		{"UPDATE accounts_b SET balance = balance + ? WHERE id = ?", []any{amount, dst}},
		{"INSERT INTO transfers (src, dst, amount, note) VALUES (?, ?, ?, ?)", []any{src, dst, amount, note}},
	} {
		if _, err := conn.ExecContext(ctx, s.q, s.args...); err != nil {
			conn.ExecContext(ctx, "ROLLBACK")
			return fmt.Errorf("%s: %w", s.q, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// HoldLock opens path in another process and holds an exclusive lock on it until the test
// ends (in rollback-journal mode this blocks every reader).
func HoldLock(t testing.TB, path string) {
	t.Helper()
	sqlite3 := testenv.Tool(t, "sqlite3")
	cmd := exec.Command(sqlite3, path)
	cmd.Env = testenv.Env(t)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "BEGIN EXCLUSIVE; UPDATE accounts_a SET balance = balance WHERE id = 1; SELECT 'locked';")
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sqlite3 did not take the lock: %q %v", line, err)
	}
	t.Cleanup(func() {
		fmt.Fprintln(in, "ROLLBACK;")
		in.Close()
		cmd.Wait()
	})
}
