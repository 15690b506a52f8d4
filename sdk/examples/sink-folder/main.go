// Command nightjar-sink-folder is an external nightjar sink that keeps objects in a folder.
// It is the template for plugin authors: copy this folder, rename the type, replace the
// folder logic with your storage (tape, SFTP, a vendor's API) and keep the contract.
//
// It imports only nightjar's sdk/, never core/ or plugins/: a plugin is built and shipped on
// its own. Build it as nightjar-sink-<type> and put it in plugins.dir; a config sink
// {type: folder, root: /srv/folder} then uses it.
package main

import "github.com/nightjar-backup/nightjar/sdk/blob"

func main() {
	blob.Serve(&Store{})
}
