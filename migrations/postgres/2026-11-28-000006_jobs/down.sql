DROP TABLE device_backups;
DROP TABLE nodes;
DROP TABLE job_leases;
DROP TABLE job_runs;
