package sqlitecopy

// CheckFreeForTest exposes checkFree to the external tests.
var CheckFreeForTest = checkFree
