import fc from 'fast-check';

// FC_RUNS=5000 npm test -- properties  explores far more schedules than the default 100.
fc.configureGlobal({ numRuns: Number(process.env.FC_RUNS ?? 100) });
