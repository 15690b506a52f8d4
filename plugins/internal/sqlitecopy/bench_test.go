package sqlitecopy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
)

// BenchmarkCopy times the copy step alone (bench/20-sqlite.sh compares it with the stock
// sqlite3 on a larger database).
func BenchmarkCopy(b *testing.B) {
	for _, m := range []sqlitecopy.Method{sqlitecopy.MethodBackup, sqlitecopy.MethodVacuum} {
		b.Run(string(m), func(b *testing.B) {
			dir := b.TempDir()
			db := filepath.Join(dir, "bank.db")
			sqlitetest.CreateBank(b, db, "wal", 16)
			fi, _ := os.Stat(db)
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dst := filepath.Join(dir, "copy.db")
				if _, err := sqlitecopy.Copy(context.Background(), db, dst, sqlitecopy.Options{Method: m}); err != nil {
					b.Fatal(err)
				}
				os.Remove(dst)
			}
		})
	}
}

// BenchmarkCheck times PRAGMA integrity_check and quick_check on a copy.
func BenchmarkCheck(b *testing.B) {
	for _, level := range []sqlitecopy.Level{sqlitecopy.LevelFull, sqlitecopy.LevelQuick} {
		b.Run(string(level), func(b *testing.B) {
			db := filepath.Join(b.TempDir(), "bank.db")
			sqlitetest.CreateBank(b, db, "delete", 16)
			fi, _ := os.Stat(db)
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := sqlitecopy.Check(context.Background(), db, level); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
