#!/bin/bash
#SBATCH --job-name=hedge-CERN_central_A-TEST_QUEUE-w42
#SBATCH -o /pscratch/sd/h/harvester/edge/CERN_central_A/42/42.out
#SBATCH -e /pscratch/sd/h/harvester/edge/CERN_central_A/42/25-01-02_03/42.err
#SBATCH -N 2
#SBATCH --time=62
#SBATCH --ntasks-per-node=4
#SBATCH --mem=2000
#SBATCH -A m1234 -q debug
export HARVESTER_ID=CERN_central_A HARVESTER_WORKER_ID=42
echo TEST_QUEUE TEST_QUEUE grid managed 8 /pscratch/sd/h/harvester/edge/CERN_central_A/42/25-01-02_03
for i in {1..3}; do echo "${HOME} $i"; done
