package probe

import "time"

// aLongTimeAgo ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// drainDeadline bounds the reading of a command's output after its exit:
// a grandchild may hold the pipe open.
func drainDeadline() time.Time { return time.Now().Add(100 * time.Millisecond) }
