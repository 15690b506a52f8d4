package blob

// copyBuffer is the size of each write CopyToFile makes: a sink gets its data in 1 MiB
// chunks, and io.Copy's 32 KiB would turn each into 32 write calls.
const copyBuffer = 1 << 20
