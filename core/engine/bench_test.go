package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/nightjar-backup/nightjar/core"
)

// BenchmarkRun measures the engine alone (hashing, fan-out, queues) with in-memory sinks
// that discard what they read and no transforms.
func BenchmarkRun(b *testing.B) {
	const size = 128 << 20
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("sinks=%d", n), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				var sinks []NamedSink
				for i := 0; i < n; i++ {
					s := newMemSink()
					s.discard = true
					sinks = append(sinks, NamedSink{Name: fmt.Sprint(i), Sink: s})
				}
				p := &Pipeline{Name: "p", Sources: []core.Source{&genSource{name: "a", size: size}}, Sinks: sinks}
				if _, err := Run(context.Background(), p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
