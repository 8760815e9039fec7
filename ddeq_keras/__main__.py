"""`python -m ddeq_keras`: the project's main job, offline (see `ddeq_keras.examples.main_job`).

Loads the pretrained ``ddeq_mnist`` from the zoo, classifies bundled real MNIST test
clouds with solver statistics, fine-tunes it briefly on a bundled folder of point
sets and draws a cloud with its equilibrium particles. ``--help`` lists the options.
"""

import sys


def main(argv=None):
    from ddeq_keras.examples import main_job

    main_job.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
