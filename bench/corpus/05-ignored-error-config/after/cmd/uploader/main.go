package main

import (
	"flag"
	"log"

	"example.com/uploader/config"
	"example.com/uploader/server"
)

func main() {
	path := flag.String("config", "/etc/uploader.json", "configuration file")
	flag.Parse()
	cfg := config.Load(*path)
	log.Fatal(server.Run(cfg))
}
