# Source on a GPU machine without a package registry: installs the wheels found in .whl/ into /tmp/site (no
# index, no dependencies; WHEELS=DIR picks another folder): mamba-ssm's, and hydra-core, omegaconf and
# antlr4-python3-runtime==4.9.3 (`pip wheel --no-deps -w .whl ...`), which that machine lacks, and puts the emoji cache in .data/ on the data path.
#   . tools/gpu_setup.sh
wheels=${WHEELS:-.whl}
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --upgrade --no-deps --no-index --target /tmp/site "$wheels"/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
[ -d .data ] && export GINR_DATA_DIR=$PWD/.data
export PYTHONUNBUFFERED=1
python3 -c 'import torch, sys; print("torch", torch.__version__, torch.cuda.get_device_name(0), file=sys.stderr)'
