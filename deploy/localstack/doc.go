// Package localstack starts the services omsd runs on, privately and on
// free 127.0.0.1 ports: a PostgreSQL 15 server (initdb into a data
// directory, run as the postgres user when started by root), a redis-server
// (optionally a three-master Redis Cluster), and franz-go's kfake
// Kafka-protocol broker in process, seeded with the topics of the v1
// contract.
//
// The same code serves `omsd dev`, the demo and every integration test
// (through package stacktest). Every child process is started with a
// parent-death signal and stopped by PID on Close, so nothing is left
// behind. A missing server binary is an error that names the Debian package
// to install.
//
// Services that already run can be used instead: OMS_DATABASE_URL,
// OMS_REDIS_URL and OMS_KAFKA_BROKERS replace the corresponding private
// service.
package localstack
