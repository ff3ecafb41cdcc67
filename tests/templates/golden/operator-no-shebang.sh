#!/bin/bash
#SBATCH --job-name=hedge-CERN_central_A-Q-w44
#SBATCH --nodes=1
echo hedge-CERN_central_A-Q-w44
