package blob

// WriteBehindWindow is how much WriteBehind lets be written before it starts the
// writeback of it.
const WriteBehindWindow = 8 << 20
