# The in-cluster load generator image: Locust plus numpy (stress/_locustfile.py uses it).
# docker build -f locust.Dockerfile -t REGISTRY/autoconf-locust:2.47.0 . && docker push ...
# then: --backend-option locust_image=REGISTRY/autoconf-locust:2.47.0
FROM locustio/locust:2.47.0
RUN pip install --no-cache-dir "numpy>=1.24"
