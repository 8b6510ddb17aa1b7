//go:build !race && linux

package rawconn

func raceRead([]byte, int)  {}
func raceBeforeWrite()      {}
func raceWrote([]byte, int) {}
