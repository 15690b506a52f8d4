//go:build unix

package pluginhost

import "syscall"

// procAttr puts the plugin in its own process group: a terminal's Ctrl-C goes to nightjar
// alone, which cancels the run and then stops its plugins in order.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
