// Command hostile is a misbehaving retention policy for core/retention's tests, built to
// wasip1 at test time. params.mode picks the misbehaviour; "deleteall" is a well-formed
// policy that deletes everything (for the guardrail tests).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nightjar-backup/nightjar/sdk/policy"
)

func main() {
	b, _ := io.ReadAll(os.Stdin)
	in, err := policy.DecodeInput(b)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mode, _ := in.Params["mode"].(string)
	all := func(keep bool) []policy.Decision {
		ds := make([]policy.Decision, len(in.Snapshots))
		for i, s := range in.Snapshots {
			ds[i] = policy.Decision{ID: s.ID, Keep: keep, Reason: "hostile " + mode}
		}
		return ds
	}
	write := func(ds []policy.Decision) {
		os.Stdout.Write(policy.EncodeOutput(&policy.Output{ABI: 1, Decisions: ds}))
	}
	switch mode {
	case "loop":
		n := 0
		for {
			n++
		}
	case "memhog":
		var keep [][]byte
		for i := 0; ; i++ {
			b := make([]byte, 8<<20)
			for j := range b {
				b[j] = byte(i)
			}
			keep = append(keep, b)
		}
	case "garbage":
		fmt.Println("keep everything, delete nothing? {\"abi\":1,")
	case "unknown":
		write(append(all(true), policy.Decision{ID: "20200101T000000Z-000000", Keep: false, Reason: "not given"}))
	case "missing":
		write(all(false)[1:])
	case "duplicate":
		write(append(all(false), all(false)[0]))
	case "exit1":
		write(all(false))
		fmt.Fprintln(os.Stderr, "something went wrong after the output")
		os.Exit(1)
	case "panic":
		var m map[string]int
		m["x"] = 1
	case "bigout":
		fmt.Fprint(os.Stderr, strings.Repeat("chatty ", 1<<16))
		for i := 0; i < 1<<20; i++ {
			fmt.Println(strings.Repeat("x", 100))
		}
	case "wrongabi":
		fmt.Println(`{"abi":2,"decisions":[]}`)
	case "deleteall":
		write(all(false))
	case "keepall":
		write(all(true))
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(3)
	}
}
