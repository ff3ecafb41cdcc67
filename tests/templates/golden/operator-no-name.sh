#!/bin/bash
#SBATCH --job-name=hedge-CERN_central_A-Q-w43
#SBATCH --nodes=1
echo 43
