from slurm_qpu.cli import main

raise SystemExit(main())
