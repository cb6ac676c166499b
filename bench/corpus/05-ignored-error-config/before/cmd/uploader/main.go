package main

import (
	"log"

	"example.com/uploader/config"
	"example.com/uploader/server"
)

func main() {
	cfg := config.Default()
	log.Fatal(server.Run(cfg))
}
